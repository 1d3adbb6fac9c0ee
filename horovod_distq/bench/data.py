"""Offline data shared by the torch and TensorFlow examples and suites, as NumPy arrays."""

from __future__ import annotations

import numpy as np


def digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits, split 80/20 stratified.

    Returns:
        (train images, train labels, test images, test labels): float32 images [N, 8, 8] in [0, 1],
        int64 labels.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=0.2, random_state=seed, stratify=labels
    )
    return train_x, train_y, test_x, test_y
