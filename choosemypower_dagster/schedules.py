"""Schedules (America/Chicago): tier refreshes and warehouse maintenance."""

import dagster as dg

SCHEDULES: list[dg.ScheduleDefinition] = []
