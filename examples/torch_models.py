"""PyTorch models for the digits example and the benchmark suites, and the digits split as tensors.

No import of the modules beside it: it loads both as ``torch_models`` (from an example) and as
``examples.torch_models`` (from ``python -m benchmarks``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class DigitsCNN(torch.nn.Module):
    """Two 3x3 convolutions and two fully connected layers for 8x8 images (about 151k parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = torch.nn.Linear(64 * 4 * 4, 128)
        self.fc2 = torch.nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class WideMLP(torch.nn.Module):
    """A 5.4M-parameter MLP on the flattened 8x8 digits: large gradients, little compute."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(64, 2560), torch.nn.ReLU(),
            torch.nn.Linear(2560, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


MODELS = {"digits_cnn": DigitsCNN, "wide_mlp": WideMLP}


def as_tensors(split: tuple[np.ndarray, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``common.digits_split()``'s NumPy arrays as (train images, train labels, test images, test labels),
    images as [N, 1, 8, 8]."""
    train_x, train_y, test_x, test_y = (torch.from_numpy(a) for a in split)
    return train_x.unsqueeze(1), train_y, test_x.unsqueeze(1), test_y
