"""DARTS: the suggestion (search configuration) and the differentiable search trial program."""
