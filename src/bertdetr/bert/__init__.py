"""BERT: tokenizer, pretraining data, model and pretraining (Google's original release, in PyTorch)."""
