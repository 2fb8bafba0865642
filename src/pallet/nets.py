"""Small torch networks pallet trains itself: the `digits-torch` demo and distillation students.

`Classifier` answers like the scikit-learn runtime does (`label`, `probabilities`),
so a torch version and a scikit-learn version of a model are interchangeable
behind one name. `Regressor` answers `prediction`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn


def _layers(features: int, hidden: list[int], outputs: int) -> nn.Sequential:
    sizes = [features, *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], outputs))


class Classifier(nn.Module):
    """Standardize, a ReLU MLP, softmax. `classes` are the labels of the output columns."""

    def __init__(self, features: int, hidden: list[int], classes: list[int], mean: list[float] | None = None,
                 scale: list[float] | None = None):
        super().__init__()
        self.features, self.hidden, self.classes = features, list(hidden), list(classes)
        self.mean, self.scale = mean or [0.0] * features, scale or [1.0] * features
        self.register_buffer("_mean", torch.tensor(self.mean, dtype=torch.float32))
        self.register_buffer("_scale", torch.tensor(self.scale, dtype=torch.float32))
        self.register_buffer("_classes", torch.tensor(self.classes, dtype=torch.int64))
        self.body = _layers(features, self.hidden, len(self.classes))

    def logits(self, input: torch.Tensor) -> torch.Tensor:
        return self.body((input.float() - self._mean) / self._scale)

    def forward(self, input: torch.Tensor) -> dict[str, torch.Tensor]:
        probabilities = torch.softmax(self.logits(input), dim=1)
        return {"label": self._classes[probabilities.argmax(dim=1)], "probabilities": probabilities}


class Regressor(nn.Module):
    def __init__(self, features: int, hidden: list[int], outputs: int = 1, mean: list[float] | None = None,
                 scale: list[float] | None = None):
        super().__init__()
        self.features, self.hidden, self.outputs = features, list(hidden), outputs
        self.mean, self.scale = mean or [0.0] * features, scale or [1.0] * features
        self.register_buffer("_mean", torch.tensor(self.mean, dtype=torch.float32))
        self.register_buffer("_scale", torch.tensor(self.scale, dtype=torch.float32))
        self.body = _layers(features, self.hidden, outputs)

    def forward(self, input: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.body((input.float() - self._mean) / self._scale)
        return {"prediction": out[:, 0] if self.outputs == 1 else out}


def fit_classifier(x: np.ndarray, targets: np.ndarray, classes: list, hidden: list[int], *, epochs: int = 60,
                   seed: int = 0, progress: Callable[[int, int], None] = lambda done, total: None) -> Classifier:
    """Train on `targets`: class indices (n,) for labels, or probabilities (n, classes) to
    distil a teacher (soft targets, KL divergence)."""
    torch.manual_seed(seed)
    x = np.asarray(x, dtype=np.float32)
    scale = x.std(axis=0)
    model = Classifier(x.shape[1], hidden, [int(c) if isinstance(c, (int, np.integer)) else c for c in classes],
                       x.mean(axis=0).tolist(), np.where(scale > 0, scale, 1.0).tolist())
    soft = np.asarray(targets).ndim == 2
    y = torch.tensor(np.asarray(targets), dtype=torch.float32 if soft else torch.int64)
    loss_of = ((lambda logits, t: nn.functional.kl_div(torch.log_softmax(logits, 1), t, reduction="batchmean"))
               if soft else nn.functional.cross_entropy)
    _train(model, torch.from_numpy(x), y, lambda m, xb, yb: loss_of(m.logits(xb), yb), epochs, progress)
    return model.eval()


def fit_regressor(x: np.ndarray, targets: np.ndarray, hidden: list[int], *, epochs: int = 60, seed: int = 0,
                  progress: Callable[[int, int], None] = lambda done, total: None) -> Regressor:
    torch.manual_seed(seed)
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(targets, dtype=np.float32)
    y2 = y.reshape(len(y), -1)
    scale = x.std(axis=0)
    model = Regressor(x.shape[1], hidden, y2.shape[1], x.mean(axis=0).tolist(),
                      np.where(scale > 0, scale, 1.0).tolist())

    def loss(m, xb, yb):
        out = m.body((xb - m._mean) / m._scale)
        return nn.functional.mse_loss(out, yb)

    _train(model, torch.from_numpy(x), torch.from_numpy(y2), loss, epochs, progress)
    return model.eval()


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss, epochs: int, progress) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for epoch in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad()
            loss(model, x[batch], y[batch]).backward()
            optimizer.step()
        progress(epoch + 1, epochs)
