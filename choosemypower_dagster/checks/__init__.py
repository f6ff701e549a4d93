"""The data checks' rules: plan-id integrity and upstream quality, as outcomes for the UI.

Pure evaluations over warehouse rows; `orchestration/checks.py` turns them into Dagster asset
checks.
"""
