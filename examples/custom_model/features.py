"""Feature code shared by training and serving: rows of pixels scaled to unit length."""

import numpy as np


def unit_rows(pixels: np.ndarray) -> np.ndarray:
    rows = np.asarray(pixels, dtype=np.float64)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
