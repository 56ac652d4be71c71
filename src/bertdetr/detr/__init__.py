"""DETR: object detection as MMDetection structures it."""
