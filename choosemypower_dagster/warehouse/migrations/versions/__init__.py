"""Migration scripts, applied in revision order (0001, 0002, ...)."""
