"""The ComparePower pricing API client: HTTP, pacing, circuit breaker and response parsing.

It knows nothing of the warehouse; `plans.source` decides when to call it."""
