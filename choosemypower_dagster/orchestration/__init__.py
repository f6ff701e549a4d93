"""Dagster objects only, kept thin: assets, checks, jobs, schedules, sensors, partitions,
resources, tags. The logic they run lives in the domain packages beside this one."""
