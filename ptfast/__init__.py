"""ptfast: fast, lfd-compatible process tracking for Linux servers."""

__version__ = "0.1.0"
