"""SomaAgent's version, in a module of its own: the SDK names it (in its ``User-Agent``) without
importing the top-level package, which itself loads the SDK (lazily), so neither imports the
other."""

from __future__ import annotations

__version__ = "0.1.0"
