"""Experiments: many fits of one base config (compare, sweep, front, rd), statistics, codec baselines."""
