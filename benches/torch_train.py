#!/usr/bin/env python3
"""Reference figure for `selfsup bench train`: the same SimCLR training step in PyTorch.

The same encoders as selfsup's `convnet` (4 x conv3x3-BN-ReLU, 32/64/128/256 channels, strides
1/2/2/2, global average pool) and ResNet-18 with the CIFAR stem, the same projection head
(Linear(d, d, no bias) -> BN -> ReLU -> Linear(d, 128)), NT-Xent (temperature 0.5) over both
views concatenated in one forward pass, SGD (momentum 0.9, weight decay 5e-4, dampening 0).
Inputs are pre-made random tensors, like `selfsup bench train --mode premade`.

Usage:
  python3 benches/torch_train.py --arch convnet --batch 256 --threads 2 --steps 10
  python3 benches/torch_train.py --arch resnet18 --batch 128 --threads 2 --steps 5
Not part of the tests.
"""
import argparse
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn_relu(cin, cout, k, s):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        chans, strides, layers, c = [32, 64, 128, 256], [1, 2, 2, 2], [], 3
        for co, s in zip(chans, strides):
            layers.append(conv_bn_relu(c, co, 3, s))
            c = co
        self.features = nn.Sequential(*layers)
        self.dim = 256

    def forward(self, x):
        return self.features(x).mean(dim=(2, 3))


class Basic(nn.Module):
    def __init__(self, cin, cout, s):
        super().__init__()
        self.c1 = conv_bn_relu(cin, cout, 3, s)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.down = None
        if s != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, s, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        return F.relu(self.b2(self.c2(self.c1(x))) + idt)


class ResNet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = conv_bn_relu(3, 64, 3, 1)
        blocks, c = [], 64
        for stage, n in enumerate([2, 2, 2, 2]):
            w = 64 << stage
            for i in range(n):
                blocks.append(Basic(c, w, 2 if stage > 0 and i == 0 else 1))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.dim = 512

    def forward(self, x):
        return self.blocks(self.stem(x)).mean(dim=(2, 3))


class SimCLR(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        d = backbone.dim
        self.head = nn.Sequential(nn.Linear(d, d, bias=False), nn.BatchNorm1d(d), nn.ReLU(inplace=True), nn.Linear(d, 128))

    def forward(self, x):
        return self.head(self.backbone(x))


def nt_xent(z, n, t):
    z = F.normalize(z, dim=1)
    logits = z @ z.t() / t
    logits.fill_diagonal_(-1e9)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(logits, target)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=["convnet", "resnet18"], default="convnet")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = SimCLR(ConvNet() if a.arch == "convnet" else ResNet18())
    opt = torch.optim.SGD(model.parameters(), lr=0.06 * a.batch / 256, momentum=0.9, weight_decay=5e-4)
    batches = [torch.randn(2 * a.batch, 3, 32, 32) for _ in range(a.warmup + a.steps)]
    times = []
    for k, x in enumerate(batches):
        t = time.perf_counter()
        loss = nt_xent(model(x), a.batch, 0.5)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if k >= a.warmup:
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch {torch.__version__} arch={a.arch} batch={a.batch} threads={a.threads}: median step {med:.3f} s = "
          f"{a.batch / med:.1f} pairs/s over {a.steps} steps; peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
