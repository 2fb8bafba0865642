"""Torch modules the export tests save (a module file, as a user's model would live in)."""

from torch import nn


class Forgetful(nn.Module):
    """Takes a width, but does not keep it: pallet cannot rebuild it."""

    def __init__(self, width: int):
        super().__init__()
        self.layer = nn.Linear(width, 2)

    def forward(self, input):
        return self.layer(input)
