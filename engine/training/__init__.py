"""Making story models: datasets (and, later, fine-tuning and training)."""
