"""Models and offline data for the example and the end-to-end suite (scikit-learn's bundled digits)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from horovod_distq.bench.data import digits_split


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


def load_digits_split(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, test images, test labels); images as [N, 1, 8, 8] in [0, 1]."""
    train_x, train_y, test_x, test_y = digits_split(seed)
    return (torch.from_numpy(train_x).unsqueeze(1), torch.from_numpy(train_y),
            torch.from_numpy(test_x).unsqueeze(1), torch.from_numpy(test_y))
