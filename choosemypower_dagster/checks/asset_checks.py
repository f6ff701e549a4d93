"""Asset checks on the plans and their roll-ups, collected for the definitions."""

import dagster as dg

ASSET_CHECKS: list[dg.AssetChecksDefinition] = []
