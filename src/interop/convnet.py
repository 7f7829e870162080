"""selfsup's `convnet` encoder in PyTorch, to load the weights `selfsup export --format torchvision`
writes beside this file:

    from safetensors.torch import load_file
    from convnet import ConvNet
    model = ConvNet()
    model.load_state_dict(load_file("encoder.safetensors"), strict=True)
    model.eval()
    features = model(images)  # [n, 3, h, w] normalized as the file's metadata says -> [n, 256]

4 x (3x3 conv without bias, BatchNorm, ReLU) with 32, 64, 128 and 256 channels and strides
1, 2, 2, 2, then global average pooling. BatchNorm epsilon 1e-5 (as selfsup's).
"""

import torch
from torch import nn


class ConvBnRelu(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels_out, eps=1e-5)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class ConvNet(nn.Module):
    widths = (32, 64, 128, 256)
    strides = (1, 2, 2, 2)

    def __init__(self):
        super().__init__()
        layers, channels = [], 3
        for width, stride in zip(self.widths, self.strides):
            layers.append(ConvBnRelu(channels, width, stride))
            channels = width
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).mean(dim=(2, 3))
