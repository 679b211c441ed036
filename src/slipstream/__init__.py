"""slipstream: a self-hosted, Render-compatible deployment platform."""

__version__ = "0.1.0"
