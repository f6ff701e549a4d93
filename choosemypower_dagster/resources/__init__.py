"""Dagster resources: the warehouse, the ComparePower client and the city catalog."""
