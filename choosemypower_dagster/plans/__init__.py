"""The plan refresh: each TDSP's plans from the cache or one API call, fanned out to cities."""
