"""The general image embedding every photo and video frame keeps: the concepts
classifier's 1280 pooled features (tagd.analyzers.concepts), as int8.

Here, apart from the analyzer, so the daemon and the API read stored
embeddings (similar photos, taught tags) with numpy alone.
"""

from __future__ import annotations

import numpy as np

# The label of the one finding per photo (per video frame) that carries the
# embedding: never a class key, so no concept adds it up.
EMBEDDING = "@embedding"
FEATURE_MAX = 6.0  # EfficientNet-Lite's features come out of ReLU6


def embedding_int8(features: np.ndarray) -> np.ndarray:
    """The pooled features as int8: their square roots, scaled so the largest
    possible value (FEATURE_MAX) is 127. The root spreads the many small values
    over more steps, and L2 between two photos becomes a Hellinger-like
    distance, what non-negative features compare best by."""
    roots = np.sqrt(np.clip(features, 0.0, FEATURE_MAX) / FEATURE_MAX)
    return np.round(roots * 127.0).astype(np.int8)


def embedding_floats(stored: np.ndarray) -> np.ndarray:
    """Stored int8 embeddings (one, or N x dim) back on the root scale, 0..1."""
    return np.asarray(stored, np.float32) / 127.0
