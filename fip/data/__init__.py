"""Photo sources, the built-in sample set and (input, target) pair generation."""
