#!/usr/bin/env python3
"""PyTorch reference for `selfsup bench ops`: the same layer shapes and operations (conv
forward, conv input gradient, conv weight gradient, training BatchNorm + ReLU forward and
backward), median milliseconds per call on the CPU.

Usage:
  python3 benches/torch_ops.py --arch convnet --pairs 256 --threads 2 --rounds 5
  python3 benches/torch_ops.py --arch resnet18 --pairs 128 --threads 2 --rounds 5
Not part of the tests.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

LAYERS = {
    # (c_in, size, c_out, stride, count per step), as in src/bench/ops.rs
    "convnet": [(3, 32, 32, 1, 1), (32, 32, 64, 2, 1), (64, 16, 128, 2, 1), (128, 8, 256, 2, 1)],
    "resnet18": [(3, 32, 64, 1, 1), (64, 32, 64, 1, 4), (64, 32, 128, 2, 1), (128, 16, 128, 1, 3),
                 (128, 16, 256, 2, 1), (256, 8, 256, 1, 3), (256, 8, 512, 2, 1), (512, 4, 512, 1, 3)],
}
OPS = ["conv forward", "conv input grad", "conv weight grad", "BN+ReLU forward", "BN+ReLU backward"]


def ms(rounds, f):
    f()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="convnet", choices=LAYERS)
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    n = 2 * a.pairs
    print(f"torch {torch.__version__} {a.arch}, {a.pairs} pairs, {a.threads} threads: median ms per call")
    print("| layer (×per step) | op | PyTorch |")
    print("| --- | --- | ---: |")
    totals = [0.0] * 5
    for c_in, size, c_out, stride, count in LAYERS[a.arch]:
        out = (size - 1) // stride + 1
        x = torch.randn(n, c_in, size, size)
        w = torch.randn(c_out, c_in, 3, 3) * 0.1
        dy = torch.randn(n, c_out, out, out)
        z = torch.randn(n, c_out, out, out)
        gamma, beta = torch.rand(c_out) + 0.5, torch.rand(c_out) + 0.5
        with torch.no_grad():
            t = [
                ms(a.rounds, lambda: F.conv2d(x, w, stride=stride, padding=1)),
                ms(a.rounds, lambda: torch.nn.grad.conv2d_input(x.shape, w, dy, stride=stride, padding=1)),
                ms(a.rounds, lambda: torch.nn.grad.conv2d_weight(x, w.shape, dy, stride=stride, padding=1)),
                ms(a.rounds, lambda: F.relu(F.batch_norm(z, None, None, gamma, beta, training=True))),
            ]
        zg = z.clone().requires_grad_(True)
        gg, bb = gamma.clone().requires_grad_(True), beta.clone().requires_grad_(True)

        def bn_backward():
            y = F.relu(F.batch_norm(zg, None, None, gg, bb, training=True))
            return torch.autograd.grad(y, (zg, gg, bb), dy)

        # Forward + backward, minus the forward alone: the backward.
        t.append(max(ms(a.rounds, bn_backward) - t[3], 0.0))
        label = f"{c_in}→{c_out} @{size} s{stride}"
        for k, op in enumerate(OPS):
            print(f"| {label} (×{count}) | {op} | {t[k]:.1f} |")
            totals[k] += t[k] * count
    for k, op in enumerate(OPS):
        print(f"| **all 3×3 layers of a step** | {op} | {totals[k]:.0f} |")


if __name__ == "__main__":
    main()
