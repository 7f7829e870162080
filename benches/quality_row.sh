#!/bin/bash
# One row of BENCHMARKS.md's "Quality per CPU-hour" table: the convnet recipe with the given
# --set overrides, trained for the epochs that fit in BUDGET_S seconds of wall-clock time, then
# k-NN (k = 200, t = 0.1) on the selection split and on the full CIFAR-10 splits.
#
#   benches/quality_row.sh NAME BUDGET_S [--set key=value ...]
#
# Expects (see BENCHMARKS.md): $SPLIT/fit and $SPLIT/val (the training folder split by file
# number: 0000-4499 of each class fit, 4500-4999 val), $CIFAR/train and $CIFAR/test, and
# $B = the selfsup binary. The epochs come from a 2-epoch calibration run of the same
# configuration (its time per step); the row's own wall time is recorded beside.
set -u
B=${B:-target/release/selfsup}
SPLIT=${SPLIT:-/tmp/q9b/split}
CIFAR=${CIFAR:-/tmp/cifar10}
CONFIG=${CONFIG:-configs/cifar10-convnet.toml}
OUT=${OUT:-/tmp/q9b}
NAME=$1; BUDGET=$2; shift 2
Q="--config $CONFIG --set data.limit=10000 --set monitor.every=0 --set monitor.knn_every=0"
rm -rf "$OUT/cal-$NAME" "$OUT/$NAME"
$B pretrain --data "$SPLIT/fit" --out "$OUT/cal-$NAME" $Q --set train.epochs=2 --set train.log_every=1 "$@" -q
EPOCHS=$(python3 - "$OUT/cal-$NAME/metrics.jsonl" "$BUDGET" <<'PY'
import json, sys
m = [json.loads(l) for l in open(sys.argv[1])]
first, last = m[0], m[-1]
t_step = (last["elapsed_s"] - first["elapsed_s"]) / (last["step"] - first["step"])
print(max(1, int((float(sys.argv[2]) - 10) / (t_step * (last["step"] // 2)))))
PY
)
echo "$NAME: $EPOCHS epochs for a budget of $BUDGET s"
START=$(date +%s.%N)
$B pretrain --data "$SPLIT/fit" --out "$OUT/$NAME" $Q --set train.epochs="$EPOCHS" "$@" -q || exit 1
echo "$NAME: trained in $(python3 -c "print(round($(date +%s.%N) - $START))") s"
$B knn --model "$OUT/$NAME" --train "$SPLIT/fit" --test "$SPLIT/val" --k 200 --t 0.1 -q
$B knn --model "$OUT/$NAME" --train "$CIFAR/train" --test "$CIFAR/test" --k 200 --t 0.1 -q --eval-dir "$OUT/$NAME/eval-test"
