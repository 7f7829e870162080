#!/usr/bin/env python3
"""PyTorch reference for the quality benchmark: SimCLR with the same convnet and recipe as
`configs/cifar10-convnet.toml`, then weighted k-NN (k=200, t=0.1) on the full CIFAR-10 splits.

Recipe: a stratified subset of the training folder (1,000 images per class by default), batch
256 (incomplete last batch dropped), torchvision's SimCLR augmentations at 32 px without blur
(RandomResizedCrop, flip, ColorJitter(0.4, 0.4, 0.4, 0.1) p=0.8, grayscale p=0.2, CIFAR-10
normalization), both views in one forward pass, NT-Xent at temperature 0.5, SGD lr 0.06 x
batch/256 with momentum 0.9 and weight decay 5e-4, cosine decay per step to 0, 30 epochs.
Features for k-NN: the backbone (before the head) on the un-augmented, normalized images.

Usage:
  python3 benches/torch_simclr.py --train /tmp/cifar10/train --test /tmp/cifar10/test --epochs 30
Not part of the tests.
"""
import argparse
import math
import os
import random
import time

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from torch_train import ConvNet, SimCLR, nt_xent

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def folder(root):
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    items = []
    for c, name in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(root, name))):
            items.append((os.path.join(root, name, f), c))
    return items


class Pairs(torch.utils.data.Dataset):
    def __init__(self, items):
        self.images = [Image.open(p).convert("RGB") for p, _ in items]
        self.tf = T.Compose([
            T.RandomResizedCrop(32), T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(0.2),
            T.ToTensor(), T.Normalize(MEAN, STD)])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.tf(self.images[i]), self.tf(self.images[i])


@torch.no_grad()
def features(backbone, items, batch=512):
    tf = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    out = []
    for s in range(0, len(items), batch):
        x = torch.stack([tf(Image.open(p).convert("RGB")) for p, _ in items[s:s + batch]])
        out.append(F.normalize(backbone(x), dim=1))
    return torch.cat(out), torch.tensor([c for _, c in items])


@torch.no_grad()
def knn(ftr, ltr, fte, lte, k=200, t=0.1, classes=10):
    correct = 0
    for s in range(0, len(fte), 256):
        sim = fte[s:s + 256] @ ftr.t()
        w, idx = sim.topk(k, dim=1)
        votes = torch.zeros(len(w), classes).scatter_add_(1, ltr[idx], (w / t).exp())
        correct += (votes.argmax(1) == lte[s:s + 256]).sum().item()
    return correct / len(fte)


def arguments(epochs, **extra):
    """The command line both reference scripts share (`extra`: more options, name → kwargs)."""
    ap = argparse.ArgumentParser()
    for name, kw in extra.items():
        ap.add_argument(name, **kw)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--per-class", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=epochs)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args()


def setup(a):
    """Threads and seeds as `a` says; the training folder, its stratified subset of `a.per_class`
    images per class, and the test folder."""
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    train_all, test = folder(a.train), folder(a.test)
    by_class = {}
    for it in train_all:
        by_class.setdefault(it[1], []).append(it)
    subset = [it for c in sorted(by_class) for it in random.sample(by_class[c], a.per_class)]
    return train_all, subset, test


def main():
    a = arguments(30)
    train_all, subset, test = setup(a)
    loader = torch.utils.data.DataLoader(Pairs(subset), batch_size=a.batch, shuffle=True, drop_last=True,
                                         num_workers=a.workers, persistent_workers=a.workers > 0)
    model = SimCLR(ConvNet())
    lr = 0.06 * a.batch / 256
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    total = a.epochs * len(loader)
    step, start = 0, time.time()
    for epoch in range(a.epochs):
        model.train()
        for v1, v2 in loader:
            for g in opt.param_groups:
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = nt_xent(model(torch.cat([v1, v2])), a.batch, 0.5)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        print(f"epoch {epoch + 1}/{a.epochs}: loss {loss.item():.4f}, {time.time() - start:.0f} s", flush=True)
    train_s = time.time() - start
    model.eval()
    ftr, ltr = features(model.backbone, train_all)
    fte, lte = features(model.backbone, test)
    acc = knn(ftr, ltr, fte, lte)
    print(f"torch {torch.__version__}: {len(subset)} images, {a.epochs} epochs in {train_s / 60:.1f} min; "
          f"k-NN (k=200, t=0.1) top-1 {100 * acc:.2f}% on {len(test)} test images")


if __name__ == "__main__":
    main()
