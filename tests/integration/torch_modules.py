"""Torch modules the export tests save (a module file, as a user's model would live in)."""

from torch import nn


class Forgetful(nn.Module):
    """Takes a width, but does not keep it: pallet cannot rebuild it."""

    def __init__(self, width: int):
        super().__init__()
        self.layer = nn.Linear(width, 2)

    def forward(self, input):
        return self.layer(input)


class Branchy(nn.Module):
    """Takes a path that depends on the values it is given: torch.export cannot trace it."""

    def __init__(self, width: int = 4):
        super().__init__()
        self.width = width
        self.layer = nn.Linear(width, 2)

    def forward(self, input):
        if input.sum() > 0:
            return self.layer(input)
        return -self.layer(input)
