"""Source-code lint: the scanner for hard-coded plan IDs and ESIIDs."""
