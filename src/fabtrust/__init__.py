"""fabtrust: a zero-trust chain from the OEM's root key into every device and through its life."""

from __future__ import annotations

__version__ = "0.1.0"
