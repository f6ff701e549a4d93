"""Errors of the ComparePower client; each names the TDSP and the reason."""

from __future__ import annotations


class ComparePowerError(RuntimeError):
    """A TDSP's plans could not be fetched or understood."""


class ApiUnavailableError(ComparePowerError):
    """The API did not answer successfully after every retry."""


class CircuitOpenError(ApiUnavailableError):
    """The circuit breaker is open: calls are refused without reaching the API."""


class MalformedResponseError(ComparePowerError):
    """The API answered, but not with a JSON array of plans."""


class ApiConfigError(ComparePowerError):
    """The client's configuration (e.g. its base URL) is unusable."""
