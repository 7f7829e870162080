#!/usr/bin/env python3
"""lightly 1.6 reference for BENCHMARKS.md "Methods": one of selfsup's `method.kind`s trained with
lightly's own heads, losses, momentum update and memory banks (pip package `lightly`), on the same
convnet as selfsup (`torch_train.ConvNet`), with the same augmentation, optimizer, batch and epochs
as `configs/cifar10-<method>.toml`, on a 10,000-image stratified subset of the training folder,
then weighted k-NN (k = 200, t = 0.1) on the full splits, as `torch_simclr.py` evaluates.

What is the same as selfsup's config, per method (the `METHODS` table below):
- augmentation: torchvision's SimCLR transforms at 32 px without blur (RandomResizedCrop with the
  config's crop scale, flip, ColorJitter(0.4, 0.4, 0.4, 0.1) p = 0.8, grayscale p = 0.2, CIFAR-10
  normalization), two views;
- heads of the config's shapes, built from lightly's head classes (Linear before BatchNorm without
  bias, lightly's rule, as selfsup's);
- SGD with momentum 0.9, the config's lr (x batch/256 unless the config says `lr_scaling =
  "none"`) and weight decay on every parameter (as selfsup's SGD and torch.optim.SGD do, and
  lightly's cifar10_benchmark.py); cosine decay per step to 0, no warm-up. (The 2026-12-02
  5-epoch sweep in BENCHMARKS.md ran an earlier version that skipped biases and normalization
  weights in the decay);
- the teacher's momentum: lightly's `cosine_schedule` from the config's momentum to 1.
lightly's losses are used as lightly writes them. Where selfsup's loss is a multiple of lightly's,
its config's lr and weight decay make the same updates (BYOL: selfsup's Σ(2 − 2 cos) is 4x
lightly's −mean cos, so selfsup's lr is lightly's / 4 and its weight decay 4x; see
configs/cifar10-byol.toml). lightly has no MoCo v3 loss: it is written here as solo-learn writes it
(2τ · cross-entropy, both orders summed). MoCo uses lightly's SplitBatchNorm (8 groups) and
batch_shuffle of the keys, as lightly's benchmark does (selfsup: `method.shuffle_bn_splits`, the
same 8 groups of one view each). Differences left as they are, stated in BENCHMARKS.md: lightly's
MoCo memory bank is pushed twice per step, the second query seeing the first push's keys
(lightly's own behaviour, kept); lightly's bank drops the part of a batch that does not fit
before its end (selfsup's wraps around).

Usage:
  python3 benches/lightly_methods.py --method byol --train /tmp/cifar10/train --test /tmp/cifar10/test --epochs 10
Not part of the tests (CI has no lightly).
"""
import copy
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from lightly.loss import BarlowTwinsLoss, DINOLoss, NegativeCosineSimilarity, NTXentLoss, VICRegLoss
from lightly.models.batchnorm import SplitBatchNorm
from lightly.models.modules import NNMemoryBankModule
from lightly.models.modules.heads import (BYOLPredictionHead, DINOProjectionHead, MoCoProjectionHead,
                                          NNCLRPredictionHead, ProjectionHead, SimSiamPredictionHead)
from lightly.models.utils import batch_shuffle, batch_unshuffle, deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule

from torch_simclr import MEAN, STD, arguments, features, knn, setup
from torch_train import ConvNet

D = 256  # the convnet's feature dimension

# lr is per 256 images (x batch/256) unless scaled is False; scale is the crop's area range.
METHODS = {
    "simclr": dict(lr=0.06, wd=5e-4),                      # configs/cifar10-convnet.toml
    "moco": dict(lr=0.12, wd=5e-4, momentum=0.99),
    "mocov3": dict(lr=0.12, wd=5e-4, momentum=0.99),
    "byol": dict(lr=0.12, wd=5e-4, momentum=0.99),         # lightly's loss at lightly's lr and decay
    "simsiam": dict(lr=0.06, wd=5e-4, scaled=False, scale=(0.2, 1.0)),
    "barlowtwins": dict(lr=0.12, wd=5e-4),
    "vicreg": dict(lr=0.01, wd=5e-4),                      # its loss went NaN at 0.03 (5 epochs)
    "nnclr": dict(lr=0.12, wd=5e-4),
    "dino": dict(lr=0.12, wd=5e-4, momentum=0.99, scale=(0.4, 1.0)),
}


class Pairs(torch.utils.data.Dataset):
    def __init__(self, items, scale):
        self.images = [Image.open(p).convert("RGB") for p, _ in items]
        self.tf = T.Compose([
            T.RandomResizedCrop(32, scale=scale), T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(0.2),
            T.ToTensor(), T.Normalize(MEAN, STD)])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.tf(self.images[i]), self.tf(self.images[i])


def teacher_of(*modules):
    out = [copy.deepcopy(m) for m in modules]
    for m in out:
        deactivate_requires_grad(m)
    return out


class Method(nn.Module):
    """A backbone and the method's heads; `loss(x0, x1, m, epoch)` is one step's loss (it also
    moves the teacher by momentum `m`, as lightly's benchmark does at the start of a step)."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.backbone = ConvNet()
        bn = nn.BatchNorm1d
        if kind == "simclr":
            self.head = ProjectionHead([(D, D, bn(D), nn.ReLU()), (D, 128, None, None)])
            self.crit = NTXentLoss(temperature=0.5)
        elif kind == "moco":
            # lightly's MoCo benchmark: the backbone's batch norms split in 8 (SplitBatchNorm),
            # the keys shuffled before the key encoder (selfsup: method.shuffle_bn_splits = 8).
            split_batch_norm(self.backbone, 8)
            self.head = MoCoProjectionHead(D, 512, 128)
            self.crit = NTXentLoss(temperature=0.1, memory_bank_size=(4096, 128))
        elif kind == "mocov3":
            self.head = MoCoProjectionHead(D, 4096, 256, num_layers=2, batch_norm=True)
            self.pred = BYOLPredictionHead(256, 4096, 256)
        elif kind == "byol":
            self.head = ProjectionHead([(D, 1024, bn(1024), nn.ReLU()), (1024, 256, None, None)])
            self.pred = BYOLPredictionHead(256, 1024, 256)
            self.crit = NegativeCosineSimilarity()
        elif kind == "simsiam":
            self.head = ProjectionHead([(D, 2048, bn(2048), nn.ReLU()), (2048, 2048, bn(2048), None)])
            self.pred = SimSiamPredictionHead(2048, 512, 2048)
            self.crit = NegativeCosineSimilarity()
        elif kind == "barlowtwins":
            self.head = ProjectionHead([(D, 2048, bn(2048), nn.ReLU()), (2048, 2048, None, None)])
            self.crit = BarlowTwinsLoss()
        elif kind == "vicreg":
            self.head = ProjectionHead([(D, 2048, bn(2048), nn.ReLU()), (2048, 2048, bn(2048), nn.ReLU()),
                                        (2048, 2048, None, None)])
            self.crit = VICRegLoss()
        elif kind == "nnclr":
            self.head = ProjectionHead([(D, 2048, bn(2048), nn.ReLU()), (2048, 256, bn(256), None)])
            self.pred = NNCLRPredictionHead(256, 4096, 256)
            self.bank = NNMemoryBankModule(size=(4096, 256))
            self.crit = NTXentLoss(temperature=0.5)
        elif kind == "dino":
            self.head = dino_head()
            self.crit = DINOLoss(output_dim=2048)
        else:
            raise SystemExit(f"unknown method {kind}")
        if kind == "dino":
            # weight_norm's parameters cannot be deep-copied: a second head, then the student's
            # weights (the teacher starts as a copy, as selfsup's; lightly's DINO benchmark
            # leaves the teacher head at its own random draw).
            (self.t_backbone,) = teacher_of(self.backbone)
            self.t_head = dino_head()
            self.t_head.load_state_dict(self.head.state_dict())
            deactivate_requires_grad(self.t_head)
        elif kind in ("moco", "mocov3", "byol"):
            # The teacher starts as a copy of the student.
            self.t_backbone, self.t_head = teacher_of(self.backbone, self.head)

    def student(self, x):
        return self.head(self.backbone(x))

    @torch.no_grad()
    def teacher(self, x):
        return self.t_head(self.t_backbone(x))

    def loss(self, x0, x1, m, epoch):
        k = self.kind
        if hasattr(self, "t_backbone"):
            update_momentum(self.backbone, self.t_backbone, m)
            update_momentum(self.head, self.t_head, m)
        if k == "simclr":
            return self.crit(self.student(x0), self.student(x1))
        if k == "moco":
            def key(x):
                x, shuffle = batch_shuffle(x)
                return batch_unshuffle(self.teacher(x), shuffle)
            q0, q1, k0, k1 = self.student(x0), self.student(x1), key(x0), key(x1)
            if self.moco_bank == "lightly":
                # NTXentLoss returns the bank from before its push and then pushes, so the second
                # term's negatives hold this step's k1, q1's own crop's key among them.
                return 0.5 * (self.crit(q0, k1) + self.crit(q1, k0))
            # "pre-step": both terms against the bank from before the step (MoCo's paper and
            # selfsup), then both keys pushed, as lightly's two calls push them.
            mb = self.crit.memory_bank
            bank, ptr = mb.bank.clone(), mb.bank_ptr.clone()
            l0 = self.crit(q0, k1)
            mb.bank.copy_(bank)
            mb.bank_ptr.copy_(ptr)
            l1 = self.crit(q1, k0)
            mb._dequeue_and_enqueue(F.normalize(k1.detach(), dim=1))
            return 0.5 * (l0 + l1)
        if k == "mocov3":
            q0, q1 = self.pred(self.student(x0)), self.pred(self.student(x1))
            k0, k1 = self.teacher(x0), self.teacher(x1)
            return mocov3_loss(q0, k1, 0.2) + mocov3_loss(q1, k0, 0.2)
        if k == "byol":
            p0, p1 = self.pred(self.student(x0)), self.pred(self.student(x1))
            z0, z1 = self.teacher(x0), self.teacher(x1)
            return 0.5 * (self.crit(p0, z1) + self.crit(p1, z0))
        if k == "simsiam":
            z0, z1 = self.student(x0), self.student(x1)
            p0, p1 = self.pred(z0), self.pred(z1)
            return 0.5 * (self.crit(z0.detach(), p1) + self.crit(z1.detach(), p0))
        if k in ("barlowtwins", "vicreg"):
            return self.crit(self.student(x0), self.student(x1))
        if k == "nnclr":
            z0, z1 = self.student(x0), self.student(x1)
            p0, p1 = self.pred(z0), self.pred(z1)
            n0 = self.bank(z0.detach(), update=False)
            n1 = self.bank(z1.detach(), update=True)
            return 0.5 * (self.crit(n0, p1) + self.crit(n1, p0))
        if k == "dino":
            teacher = [self.teacher(x0), self.teacher(x1)]
            student = [self.student(x0), self.student(x1)]
            return self.crit(teacher, student, epoch=epoch)
        raise AssertionError(k)


def split_batch_norm(module, splits):
    """Every BatchNorm2d under `module` replaced by lightly's SplitBatchNorm of `splits` groups."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, SplitBatchNorm(child.num_features, splits))
        else:
            split_batch_norm(child, splits)


def dino_head():
    """lightly's CIFAR-10 benchmark's DINO head: a 2-layer MLP with batch norm and GELU to the
    256-d bottleneck, then the weight-normalized prototypes."""
    head = DINOProjectionHead(D, 2048, 256, 2048, batch_norm=True, freeze_last_layer=1)
    head.layers = ProjectionHead([(D, 2048, nn.BatchNorm1d(2048), nn.GELU()), (2048, 256, None, None)]).layers
    return head


def mocov3_loss(q, k, t):
    """solo-learn's `mocov3_loss_func`: cross-entropy of the batch's keys, scaled by 2τ."""
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = q @ k.t() / t
    return F.cross_entropy(logits, torch.arange(len(q))) * (2 * t)


def main():
    a = arguments(10, **{
        "--method": dict(required=True, choices=sorted(METHODS)),
        "--lr": dict(type=float, default=None,
                     help="the learning rate per 256 images instead of the method's (METHODS above)"),
        "--moco-bank": dict(default="lightly", choices=["lightly", "pre-step"],
                            help="MoCo's negatives: lightly's NTXentLoss as it is (the second term sees this "
                                 "step's first keys), or the bank from before the step for both terms"),
    })
    spec = dict(METHODS[a.method])
    if a.lr is not None:
        spec["lr"] = a.lr
    train_all, subset, test = setup(a)
    loader = torch.utils.data.DataLoader(Pairs(subset, spec.get("scale", (0.08, 1.0))), batch_size=a.batch,
                                         shuffle=True, drop_last=True, num_workers=a.workers,
                                         persistent_workers=a.workers > 0)
    model = Method(a.method)
    model.moco_bank = a.moco_bank
    lr = spec["lr"] * (a.batch / 256 if spec.get("scaled", True) else 1.0)
    trained = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(trained, lr=lr, momentum=0.9, weight_decay=spec["wd"])
    total = a.epochs * len(loader)
    step, epoch_s = 0, []
    for epoch in range(a.epochs):
        model.train()
        t0 = time.time()
        for v0, v1 in loader:
            for g in opt.param_groups:
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            m = cosine_schedule(step, total, spec.get("momentum", 0.99), 1.0)
            loss = model.loss(v0, v1, m, epoch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if a.method == "dino":
                model.head.cancel_last_layer_gradients(current_epoch=epoch)
            opt.step()
            step += 1
        epoch_s.append(time.time() - t0)
        print(f"epoch {epoch + 1}/{a.epochs}: loss {loss.item():.4f}, {epoch_s[-1]:.1f} s", flush=True)
    model.eval()
    # DINO is evaluated by its teacher, as selfsup's default; the others by the student.
    backbone = model.t_backbone if a.method == "dino" else model.backbone
    ftr, ltr = features(backbone, train_all)
    fte, lte = features(backbone, test)
    acc = knn(ftr, ltr, fte, lte)
    print(f"lightly {a.method}: torch {torch.__version__}, {len(subset)} images, {a.epochs} epochs, "
          f"median epoch {statistics.median(epoch_s):.1f} s, total {sum(epoch_s):.0f} s; "
          f"k-NN (k=200, t=0.1) top-1 {100 * acc:.2f}% on {len(test)} test images")


if __name__ == "__main__":
    main()
