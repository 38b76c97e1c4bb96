"""The models this example project ships, as plain PyTorch factories."""

from torch import nn


def _cnn(width: int) -> nn.Sequential:
    """A small image classifier whose channel counts scale with ``width``."""
    w1, w2 = width, 2 * width
    return nn.Sequential(
        nn.Conv2d(3, w1, 3, padding=1), nn.BatchNorm2d(w1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(w1, w2, 3, padding=1), nn.BatchNorm2d(w2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(w2, w2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(w2, 10))


def small_cnn():
    """About 21 M MACs at 64x64: within the example budget."""
    return _cnn(32)


def wide_cnn():
    """The same network 4x wider: about 13x the MACs, and over budget."""
    return _cnn(128)
