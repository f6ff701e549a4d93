"""Small helpers shared by the domain packages and the Dagster objects."""
