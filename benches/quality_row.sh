#!/bin/bash
# One row of BENCHMARKS.md's "Quality per CPU-hour" table: the convnet recipe with the given
# --set overrides, trained for the epochs that fit in BUDGET_S seconds of wall-clock time, then
# k-NN (k = 200, t = 0.1) on the selection split and on the full CIFAR-10 splits.
#
#   benches/quality_row.sh NAME BUDGET_S [--set key=value ...]
#   SCHEDULE="MIN_SIZE START_FRAC END_FRAC" benches/quality_row.sh NAME BUDGET_S [...]
#
# Expects (see BENCHMARKS.md): $SPLIT/fit and $SPLIT/val (the training folder split by file
# number: 0000-4499 of each class fit, 4500-4999 val), $CIFAR/train and $CIFAR/test, and
# $B = the selfsup binary. The epochs come from a 2-epoch calibration run of the same
# configuration (its time per step); the row's own wall time is recorded beside.
#
# With SCHEDULE the row trains with `augment.size_schedule`: MIN_SIZE-pixel views until
# START_FRAC of the epochs, then a ramp to the full size ($SIZE, 32) at END_FRAC. A step's time
# is calibrated at MIN_SIZE and at the full size and taken as a + b * size^2 in between, and the
# epochs are the most whose schedule fits in the budget.
#
# TIMES=metrics.jsonl takes the time per step at each size from an earlier run's metrics (the
# median within epochs) instead of calibrating: a full run measures the sizes between the ends,
# and the drift of a long run, better than two short calibrations.
set -u
B=${B:-target/release/selfsup}
SPLIT=${SPLIT:-/tmp/q9b/split}
CIFAR=${CIFAR:-/tmp/cifar10}
CONFIG=${CONFIG:-configs/cifar10-convnet.toml}
OUT=${OUT:-/tmp/q9b}
SIZE=${SIZE:-32}
SCHEDULE=${SCHEDULE:-}
TIMES=${TIMES:-}
NAME=$1; BUDGET=$2; shift 2
Q="--config $CONFIG --set data.limit=10000 --set monitor.every=0 --set monitor.knn_every=0"
rm -rf "$OUT/cal-$NAME" "$OUT/cal-$NAME-min" "$OUT/$NAME"
[ -n "$SCHEDULE" ] && set -- "$@" --set augment.size=$SIZE
FULL_METRICS=$TIMES MIN_METRICS=$TIMES
if [ -z "$TIMES" ]; then
  $B pretrain --data "$SPLIT/fit" --out "$OUT/cal-$NAME" $Q --set train.epochs=2 --set train.log_every=1 "$@" -q || exit 1
  FULL_METRICS="$OUT/cal-$NAME/metrics.jsonl"
  if [ -n "$SCHEDULE" ]; then
    $B pretrain --data "$SPLIT/fit" --out "$OUT/cal-$NAME-min" $Q --set train.epochs=2 --set train.log_every=1 \
      "$@" --set augment.size="${SCHEDULE%% *}" -q || exit 1
    MIN_METRICS="$OUT/cal-$NAME-min/metrics.jsonl"
  fi
fi
PLAN=$(python3 - "$FULL_METRICS" "$BUDGET" "$SIZE" "$SCHEDULE" "$MIN_METRICS" <<'PY'
import json, math, statistics, sys
def step_times(path):
    """Median time per step at each size, over consecutive log lines within an epoch."""
    m = [json.loads(l) for l in open(path)]
    by = {}
    for p, r in zip(m, m[1:]):
        if p["epoch"] == r["epoch"] and p.get("size") == r.get("size"):
            by.setdefault(r.get("size"), []).append((r["elapsed_s"] - p["elapsed_s"]) / (r["step"] - p["step"]))
    # Steps are numbered from 1, epochs from 0: epoch e holds steps e*S+1 ..= (e+1)*S.
    per_epoch = max(-(-r["step"] // (r["epoch"] + 1)) for r in m)
    return {s: statistics.median(v) for s, v in by.items()}, per_epoch
budget, size = float(sys.argv[2]) - 10, int(sys.argv[3])
full, steps = step_times(sys.argv[1])
if not sys.argv[4]:
    print(max(1, int(budget / (full[size] * steps))))
    sys.exit()
lo, f0, f1 = int(sys.argv[4].split()[0]), *map(float, sys.argv[4].split()[1:])
times = {**step_times(sys.argv[5])[0], **full}
b = (times[size] - times[lo]) / (size**2 - lo**2)
a = times[size] - b * size**2
def size_at(e, r0, r1):  # augment::AugmentConfig::size_at
    if e < r0: return lo
    if e >= r1: return size
    v = lo + (e - r0) / (r1 - r0) * (size - lo)
    return min(max(int(math.floor(v / 4 + 0.5)) * 4, lo), size)
best = None
for n in range(1, 1000):
    r0, r1 = round(f0 * n), round(f1 * n)
    if sum(times.get(s, a + b * s * s) * steps for s in map(lambda e: size_at(e, r0, r1), range(n))) <= budget:
        best = (n, r0, r1)
print(*best)
PY
)
read -r EPOCHS R0 R1 <<< "$PLAN"
if [ -n "$SCHEDULE" ]; then
  set -- "$@" --set "augment.size_schedule={ min_size = ${SCHEDULE%% *}, ramp_start = $R0, ramp_end = $R1 }"
  echo "$NAME: $EPOCHS epochs for a budget of $BUDGET s, ${SCHEDULE%% *} px until epoch $R0, $SIZE px from epoch $R1"
else
  echo "$NAME: $EPOCHS epochs for a budget of $BUDGET s"
fi
START=$(date +%s.%N)
$B pretrain --data "$SPLIT/fit" --out "$OUT/$NAME" $Q --set train.epochs="$EPOCHS" "$@" -q || exit 1
echo "$NAME: trained in $(python3 -c "print(round($(date +%s.%N) - $START))") s"
$B knn --model "$OUT/$NAME" --train "$SPLIT/fit" --test "$SPLIT/val" --k 200 --t 0.1 -q
$B knn --model "$OUT/$NAME" --train "$CIFAR/train" --test "$CIFAR/test" --k 200 --t 0.1 -q --eval-dir "$OUT/$NAME/eval-test"
