"""Two small networks for the example sweep (sweep.toml beside this file). Plain PyTorch:
the sweep traces them on fake tensors, so nothing here is ever run on data."""

import torch
from torch import nn


def small_cnn():
    """A VGG-style network for 64 x 64 images."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))


def mlp():
    """A three-layer perceptron over 784 inputs."""
    return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                         nn.Linear(1024, 10))


if __name__ == "__main__":          # a quick look: python models.py
    print(small_cnn()(torch.zeros(1, 3, 64, 64)).shape, mlp()(torch.zeros(1, 784)).shape)
