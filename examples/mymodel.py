"""A small model of your own, as the README's "Your own model" section expects it: a function
that builds a ``torch.nn.Module`` and returns ``(model, example_inputs)``.

``sparsesim import --model examples/mymodel.py:make`` captures it by graph (torch.export, one
layer per GEMM node: here two convolutions and a linear layer), and the example inputs are the
calibration batch ``sparsesim prune --model ...`` measures activations on. Seeded, so every
run captures the same weights; tests/test_readme.py runs the README's commands on it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SmallNet(nn.Module):
    """Two 3×3 convolutions and a classifier on 16×16 RGB images (ReLU zeros the activations)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, stride=2)
        self.fc = nn.Linear(32 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv1(x))
        y = F.relu(self.conv2(y))
        return self.fc(y.flatten(1))


def make() -> tuple[nn.Module, torch.Tensor]:
    """The model and its calibration batch: 4 seeded random 16×16 images."""
    torch.manual_seed(0)
    return SmallNet().eval(), torch.randn(4, 3, 16, 16)
