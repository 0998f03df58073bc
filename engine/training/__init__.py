"""Making story models: datasets, fine-tuning, training from scratch, evaluation."""
