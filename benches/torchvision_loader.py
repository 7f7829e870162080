#!/usr/bin/env python3
"""Reference figure for the streaming data path (`selfsup bench augment --data DIR --set
data.cache_limit=0`): a PyTorch `DataLoader` over an image folder, each file read and decoded
by PIL in the workers and made into two SimCLR views, as lightly and solo-learn feed a GPU.

  --size 224 (imagenet preset): RandomResizedCrop(224, scale 0.08-1), flip, ColorJitter
  (0.4,0.4,0.4,0.1) p=0.8, RandomGrayscale(0.2), PIL Gaussian blur (sigma 0.1-2) p=0.5,
  ToTensor, Normalize — twice per image.

Source images/s (both views made), median over rounds after one warm-up round:
  python3 benches/torchvision_loader.py --data /tmp/photos/inet --workers 1 --images 1024
Each worker is one process with torch on one thread (`torch.set_num_threads(1)`), so
`--workers N` uses N cores, as `--threads N` does for selfsup. Not part of the tests.
"""
import argparse
import os
import random
import statistics
import time

import torch
from PIL import Image, ImageFilter
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T


class Blur:
    def __init__(self, p):
        self.p = p

    def __call__(self, img):
        if random.random() < self.p:
            return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(0.1, 2.0)))
        return img


def two_views(size, blur_p):
    t = T.Compose([
        T.RandomResizedCrop(size, scale=(0.08, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        Blur(blur_p),
        T.ToTensor(),
        T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])
    return lambda img: (t(img), t(img))


class Files(Dataset):
    def __init__(self, root, transform, n):
        paths = []
        for d, _, fs in os.walk(root):
            paths += [os.path.join(d, f) for f in fs if f.lower().endswith((".jpg", ".jpeg", ".png"))]
        paths.sort()
        self.paths, self.t, self.n = paths, transform, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        with Image.open(self.paths[i % len(self.paths)]) as im:
            return self.t(im.convert("RGB"))


def init_worker(_):
    torch.set_num_threads(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--blur-p", type=float, default=0.5)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--images", type=int, default=1024, help="images per timed round")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    ds = Files(a.data, two_views(a.size, a.blur_p), a.images)
    rates = []
    for r in range(a.rounds + 1):
        loader = DataLoader(ds, batch_size=a.batch, shuffle=True, num_workers=a.workers,
                            worker_init_fn=init_worker, persistent_workers=False, prefetch_factor=2)
        it = iter(loader)
        first = next(it)  # worker start-up is not timed
        t = time.perf_counter()
        n = first[0].shape[0]
        for v1, _ in it:
            n += v1.shape[0]
        dt = time.perf_counter() - t
        if r > 0:
            rates.append((n - first[0].shape[0]) / dt)
    print(f"torchvision DataLoader {a.data} size={a.size} blur_p={a.blur_p} workers={a.workers}: "
          f"median {statistics.median(rates):.0f} images/s (two views each; rounds {', '.join(f'{x:.0f}' for x in rates)})")


if __name__ == "__main__":
    main()
