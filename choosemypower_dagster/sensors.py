"""Sensors: retry failed cities, follow catalog changes, report failed runs."""

import dagster as dg

SENSORS: list[dg.SensorDefinition] = []
