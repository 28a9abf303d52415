"""XMP: sidecars and embedded packets, edited in place (see sidecar.py)."""
