#!/usr/bin/env python3
"""Reads a selfsup run's TensorBoard event file with the `tensorboard` package's own readers
and checks it against the run's metrics.jsonl.

    pip install tensorboard
    python3 benches/tensorboard_check.py RUN [RUN ...]

For each run folder: the raw records through `LegacyEventFileLoader` (the reader that
`tensorboard --load_fast=false` uses; its record reader checks both CRCs of every record), then
the scalars through `EventAccumulator` (what the Scalars dashboard is built from). Every
metrics.jsonl line must appear at its step with the same values, each tag's steps strictly
increasing. Prints one line per run; exits 1 on the first difference.
"""

import json
import math
import pathlib
import sys

from tensorboard.backend.event_processing.event_accumulator import (
    STORE_EVERYTHING_SIZE_GUIDANCE,
    EventAccumulator,
)
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow


def expected(line):
    """The tags selfsup writes for one metrics.jsonl line (src/train/tensorboard.rs)."""
    out = {f"train/{k}": line[k] for k in ("loss", "lr", "pairs_per_sec", "pos_sim", "neg_sim", "epoch")}
    out["train/view_size"] = line.get("size", 0)
    for k in ("neighbour_agreement", "teacher_momentum"):
        if k in line:
            out[f"train/{k}"] = line[k]
    mon = line.get("monitor") or {}
    for space in ("backbone", "projection"):
        s = mon.get(space)
        if s:
            for name, key in (("std", "std"), ("std_sqrt_d", "std_ratio"), ("effective_rank", "effective_rank"),
                              ("alignment", "alignment"), ("uniformity", "uniformity"), ("pos_sim", "pos_sim"),
                              ("neg_sim", "neg_sim")):
                out[f"monitor/{space}/{name}"] = s[key]
    if mon.get("backbone") or mon.get("projection"):
        out["monitor/collapse"] = 1.0 if mon.get("collapse") else 0.0
    if mon.get("knn"):
        out["monitor/knn_top1"] = 100 * mon["knn"]["top1"]
        out["monitor/knn_top5"] = 100 * mon["knn"]["top5"]
    if mon.get("linear"):
        out["monitor/linear_top1"] = 100 * mon["linear"]["top1"]
    return out


def close(a, b):
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)


def check(run):
    run = pathlib.Path(run)
    files = sorted((run / "tensorboard").glob("*tfevents*"))
    if len(files) != 1:
        sys.exit(f"{run}: expected one event file, found {len(files)}")
    # Every record's CRCs, with the stub reader (the loader alone would stop quietly at a bad one).
    reader = pywrap_tensorflow.PyRecordReader_New(str(files[0]).encode(), 0, b"")
    records = 0
    while True:
        try:
            reader.GetNext()
        except Exception as e:  # the stub raises DataLossError on a bad CRC, OutOfRange at the end
            if type(e).__name__ != "OutOfRangeError":
                sys.exit(f"{files[0]}: record {records}: {e}")
            break
        records += 1
    events = list(LegacyEventFileLoader(str(files[0])).Load())
    if len(events) != records:
        sys.exit(f"{files[0]}: {records} records but {len(events)} events")
    if events[0].file_version != "brain.Event:2":
        sys.exit(f"{files[0]}: first event is not the file version")
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance=STORE_EVERYTHING_SIZE_GUIDANCE)
    acc.Reload()
    scalars = {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}
    for tag, points in scalars.items():
        steps = [p.step for p in points]
        if any(a >= b for a, b in zip(steps, steps[1:])):
            sys.exit(f"{run}: {tag}: steps not strictly increasing")
    by_step = {tag: {p.step: p.value for p in points} for tag, points in scalars.items()}
    values = 0
    for line in lines:
        for tag, want in expected(line).items():
            got = by_step.get(tag, {}).get(line["step"])
            if got is None or not close(got, float(want)):
                sys.exit(f"{run}: step {line['step']}: {tag} = {got}, metrics.jsonl has {want}")
            values += 1
    total = sum(len(p) for p in scalars.values())
    if total != values:
        sys.exit(f"{run}: {total} scalar points but metrics.jsonl accounts for {values}")
    print(f"{run}: {records} records, CRCs good; {len(scalars)} tags, {values} values equal to metrics.jsonl's "
          f"over {len(lines)} steps")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for r in sys.argv[1:]:
        check(r)
