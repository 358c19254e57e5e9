"""Training: the generic trainer, points and chunks, processes, evaluation, the optimiser."""
