#!/usr/bin/env python3
"""The folder scan PyTorch users run: torchvision's ImageFolder listing (find_classes +
make_dataset, as `torchvision.datasets.ImageFolder(root)` does before its first image), timed
over a few rounds; compare with `selfsup bench scan --data ROOT`.

    python3 benches/scan_reference.py /tmp/million --rounds 3
"""

import argparse
import statistics
import time

from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    times = []
    for _ in range(args.rounds):
        t = time.perf_counter()
        _, class_to_idx = find_classes(args.root)
        samples = make_dataset(args.root, class_to_idx, IMG_EXTENSIONS)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(f"torchvision ImageFolder scan {args.root}: {len(samples)} images in median {med:.2f} s "
          f"= {len(samples) / med:.0f} images/s (rounds: {', '.join(f'{x:.2f}' for x in times)})")


if __name__ == "__main__":
    main()
