"""Dagster assets: reference data, per-city plans with their roll-ups, and the site export."""
