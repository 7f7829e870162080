#!/usr/bin/env python3
"""Reads shards written by `selfsup pack` with the `webdataset` package (pip install webdataset)
and checks them: every sample has an image PIL decodes and an integer `.cls`, and with
`--source FOLDER` every image is, byte for byte, a file of that folder in the class folder that
`classes.txt` names for its label, each source file exactly once.

    python3 benches/webdataset_check.py 'shards/shard-{000000..000012}.tar' --source images/

CI has no `webdataset`; the tests read the shards back with Python's `tarfile` instead.
"""

import argparse
import hashlib
import io
import os
import sys

import webdataset as wds
from PIL import Image

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tiff")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pattern", help="shard file or brace pattern, as selfsup pack prints it")
    ap.add_argument("--source", help="the image folder that was packed")
    args = ap.parse_args()

    folder = os.path.dirname(args.pattern)
    classes_txt = os.path.join(folder, "classes.txt")
    classes = open(classes_txt).read().splitlines() if os.path.exists(classes_txt) else None

    sources = {}
    if args.source:
        for root, _, names in os.walk(args.source):
            for n in names:
                p = os.path.join(root, n)
                digest = hashlib.sha256(open(p, "rb").read()).hexdigest()
                sources[digest] = os.path.basename(os.path.dirname(p))

    seen = set()
    n = 0
    for sample in wds.WebDataset(args.pattern, shardshuffle=False):
        key = sample["__key__"]
        image_key = next((k for k in IMAGE_KEYS if k in sample), None)
        if image_key is None:
            sys.exit(f"{key}: no image member ({sorted(sample)})")
        data = sample[image_key]
        Image.open(io.BytesIO(data)).convert("RGB")
        label = int(sample["cls"]) if "cls" in sample else None
        if classes is not None and label is not None and not 0 <= label < len(classes):
            sys.exit(f"{key}: label {label} outside classes.txt's {len(classes)}")
        if args.source:
            digest = hashlib.sha256(data).hexdigest()
            if digest not in sources:
                sys.exit(f"{key}: not a file of {args.source}")
            if digest in seen:
                sys.exit(f"{key}: a source file packed twice")
            seen.add(digest)
            if classes is not None and label is not None and classes[label] != sources[digest]:
                sys.exit(f"{key}: label {label} ({classes[label]}) but the file is in {sources[digest]}/")
        n += 1
    missing = len(sources) - len(seen) if args.source else 0
    print(f"webdataset {wds.__version__}: {n} samples read and decoded; "
          f"{len(classes) if classes else 'no'} classes; {missing} source files not packed")


if __name__ == "__main__":
    main()
