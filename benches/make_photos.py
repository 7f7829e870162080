#!/usr/bin/env python3
"""Makes the photograph sets of BENCHMARKS.md "Data at scale" from Debian's wallpaper packages:
random crops and rescales of the distinct JPEGs of at least 1,400 px, as
/tmp/photos/inet/all (3,000 ImageNet-like 500x375 / 375x500 / 500x333) and
/tmp/photos/phone/all (200 of 4032x3024 / 3024x4032), all at JPEG quality 90, seeded.

    mkdir -p /tmp/wp && cd /tmp/wp && apt-get download ukui-wallpapers lomiri-wallpapers \\
        plasma-workspace-wallpapers && for f in *.deb; do dpkg-deb -x $f x; done
    python3 benches/make_photos.py
"""
import glob
import os
import random

from PIL import Image


def crop(rng, im, w, h):
    W, H = im.size
    s = rng.uniform(0.35, 1.0) * min(W / w, H / h)
    cw, ch = int(w * s), int(h * s)
    x, y = rng.randint(0, W - cw), rng.randint(0, H - ch)
    return im.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BICUBIC)


def main():
    rng = random.Random(0)
    files = [f for f in glob.glob("/tmp/wp/x/**/*", recursive=True) if f.lower().endswith((".jpg", ".jpeg"))]
    files = sorted(set(os.path.realpath(f) for f in files if min(Image.open(f).size) >= 1400))
    print(len(files), "sources")
    imgs = [Image.open(f).convert("RGB") for f in files]
    for name, count, sizes in [("inet", 3000, [(500, 375), (375, 500), (500, 333)]),
                               ("phone", 200, [(4032, 3024), (3024, 4032)])]:
        out = f"/tmp/photos/{name}/all"
        os.makedirs(out, exist_ok=True)
        for i in range(count):
            crop(rng, rng.choice(imgs), *rng.choice(sizes)).save(f"{out}/{i:05d}.jpg", quality=90)


if __name__ == "__main__":
    main()
