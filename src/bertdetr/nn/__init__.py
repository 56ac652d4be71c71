"""Transformer building blocks shared by the BERT and DETR models."""
