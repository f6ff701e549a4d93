"""The ComparePower pricing API: response parsing, throttling and errors."""
