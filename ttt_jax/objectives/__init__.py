"""Self-supervised objectives: pure loss functions, one file a family."""
