"""Tools: the environment report, the step benchmark, layer diagnostics, weight analysis."""
