"""The assets: reference data, the per-city plans with their roll-ups, the site export."""
