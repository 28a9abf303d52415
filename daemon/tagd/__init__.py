"""tagd: a self-hosted, CPU-first media tagger."""

__version__ = "0.1.0"
