#!/usr/bin/env python3
"""Reference figure for `selfsup bench augment`: torchvision's SimCLR two-view transform.

Measures images/s (both views made per image) in one process with torch on one thread, over
images already decoded in memory, exactly the work `selfsup bench augment` times:

  32 px  (cifar preset):    RandomResizedCrop(32), flip, ColorJitter(0.4,0.4,0.4,0.1) p=0.8,
                            RandomGrayscale(0.2), ToTensor, Normalize — on CIFAR-10 train JPEGs;
  224 px (imagenet preset): the same at 224 plus a Gaussian blur (sigma 0.1–2.0) p=0.5 (or not,
                            with --no-blur) — on synthetic 500x375 images like the Rust bench's.
                            --blur pil (default): PIL's ImageFilter.GaussianBlur, as lightly and
                            solo-learn do; --blur torchvision: T.GaussianBlur(23), a conv2d.

Usage:
  python3 benches/torchvision_augment.py --data /tmp/cifar10/train --size 32 --images 5000
  python3 benches/torchvision_augment.py --synthetic 500x375 --size 224 --images 256 [--no-blur]
Not part of the tests.
"""
import argparse
import os
import random
import statistics
import time

import numpy as np
import torch
from PIL import Image, ImageFilter
from torchvision import transforms as T


def load_folder(root, limit):
    paths = []
    for dirpath, _, files in os.walk(root):
        paths += [os.path.join(dirpath, f) for f in files if f.lower().endswith((".jpg", ".jpeg", ".png"))]
    paths.sort()
    step = max(1, len(paths) // limit)
    return [Image.open(p).convert("RGB") for p in paths[::step][:limit]]


def synthetic(w, h, count):
    imgs = []
    ys, xs = np.mgrid[0:h, 0:w].astype(np.uint32)
    for k in range(count):
        v = (xs * (31 + k)) ^ (ys * 17)
        arr = np.stack([v & 255, (v >> 3) & 255, (xs + ys + k) & 255], axis=-1).astype(np.uint8)
        imgs.append(Image.fromarray(arr))
    return imgs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--synthetic")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-blur", action="store_true")
    ap.add_argument("--blur", choices=["torchvision", "pil"], default="pil",
                    help="torchvision's GaussianBlur (a conv2d), or PIL's ImageFilter.GaussianBlur as lightly and solo-learn use")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.data:
        imgs = load_folder(a.data, 2048)
    else:
        w, h = map(int, a.synthetic.lower().split("x"))
        imgs = synthetic(w, h, 64)
    ops = [
        T.RandomResizedCrop(a.size),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
    ]
    blur = a.size >= 64 and not a.no_blur
    if blur and a.blur == "torchvision":
        k = int(0.1 * a.size) | 1
        ops.append(T.RandomApply([T.GaussianBlur(k, sigma=(0.1, 2.0))], p=0.5))
    elif blur:
        ops.append(T.RandomApply([T.Lambda(lambda im: im.filter(ImageFilter.GaussianBlur(radius=random.uniform(0.1, 2.0))))], p=0.5))
    mean, std = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)) if a.size == 32 else ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    tf = T.Compose(ops + [T.ToTensor(), T.Normalize(mean, std)])
    rates = []
    for r in range(a.rounds + 1):
        t = time.perf_counter()
        for i in range(a.images):
            img = imgs[i % len(imgs)]
            tf(img)
            tf(img)
        dt = time.perf_counter() - t
        if r > 0:  # the first round warms up
            rates.append(a.images / dt)
    print(f"torchvision size={a.size} blur={a.blur if blur else 'off'} threads=1: median {statistics.median(rates):.0f} images/s "
          f"(two views each) over {a.rounds} rounds of {a.images} [min {min(rates):.0f}, max {max(rates):.0f}]")


if __name__ == "__main__":
    main()
