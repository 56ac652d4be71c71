"""bertdetr: BERT pretraining as Google's release does it and DETR as MMDetection structures it."""

__version__ = "0.1.0"
