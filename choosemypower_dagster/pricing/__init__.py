"""A plan's price from its components, by the whole-usage rule: pure Python, no I/O beyond files."""
