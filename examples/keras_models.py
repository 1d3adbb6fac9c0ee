"""Keras 3 models for the TensorFlow digits example and the quality suite.

No import of the modules beside it: it loads both as ``keras_models`` (from an example) and as
``examples.keras_models`` (from ``python -m benchmarks``).
"""

from __future__ import annotations

import keras


def digits_cnn() -> keras.Model:
    """The Keras twin of ``torch_models.DigitsCNN``: two 3x3 convolutions and two dense layers for 8x8 images."""
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu", name="fc1"),
            keras.layers.Dense(10, name="fc2"),
        ],
        name="digits_cnn",
    )
