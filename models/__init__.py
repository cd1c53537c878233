"""Models: baselines, the PyTorch ranker, metrics, evaluation, the promotion gate."""
