#!/usr/bin/env python3
"""PyTorch reference for BENCHMARKS.md "Methods" (the wide heads): MoCo v3's projector
(Linear 256→H, BN, ReLU, Linear H→256, BN) and predictor (Linear 256→H, BN, ReLU, Linear H→256)
on one view of 256 rows, as one step runs them: both views through both heads forward and
backward, and both views through a projector without gradient (the teacher's). Median of 11
steps, milliseconds, at H = 1024 and 4096; compare the difference between the two with the
difference between `selfsup bench train --config configs/cifar10-mocov3.toml` at
`--set model.head.hidden_dim=H --set method.predictor.hidden_dim=H`.

Usage: python3 benches/torch_head.py [--threads 2]
Not part of the tests.
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
args = p.parse_args()
torch.set_num_threads(args.threads)
for h in (1024, 4096):
    proj = nn.Sequential(nn.Linear(256, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(),
                         nn.Linear(h, 256, bias=False), nn.BatchNorm1d(256))
    pred = nn.Sequential(nn.Linear(256, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, 256))
    x = torch.randn(256, 256)
    times = []
    for _ in range(12):
        t = time.perf_counter()
        for _view in range(2):
            pred(proj(x)).sum().backward()
        with torch.no_grad():
            for _view in range(2):
                proj(x)
        times.append(time.perf_counter() - t)
    print(f"H = {h}: {statistics.median(times[1:]) * 1e3:.1f} ms a step (torch {torch.__version__})")
