"""Alembic migrations of the warehouse, packaged so an installed project can upgrade itself.

Run them with `python -m choosemypower_dagster.cli.migrate upgrade`; the warehouse
resource also upgrades a database to head the first time a process opens it.
"""
