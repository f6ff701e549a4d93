"""Command-line entry points: the refresh, the demo, warehouse migrations, the ID scanner."""
