"""Runs: a config fitted into a run folder, the folder read back, checkpoints, compression, plots."""
