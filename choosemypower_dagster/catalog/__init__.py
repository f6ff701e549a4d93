"""The reference data: the TDSP table and the Texas city catalog, loaded and validated."""
