"""Checks that guard the code location's own source: e.g. no hard-coded plan IDs or ESIIDs."""
