"""Sandbox ComparePower pricing API on loopback: deterministic plans plus fault switches."""

from .config import SandboxConfig
from .pricing import price_at
from .server import SandboxServer

__all__ = ["SandboxConfig", "SandboxServer", "price_at"]
