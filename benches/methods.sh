#!/usr/bin/env bash
# BENCHMARKS.md "Methods": every method of selfsup beside lightly's implementation of it, in one
# sitting, interleaved (selfsup, then lightly, method by method, so that the machine's drift
# falls on both): `selfsup pretrain --config configs/cifar10-<method>.toml` on a 10,000-image
# stratified subset of the training folder for EPOCHS epochs, then `selfsup knn` (k = 200,
# t = 0.1) on the full splits; and benches/lightly_methods.py with the same settings. Writes each
# run under OUT and prints the table (k-NN of each, median epoch time of each, the ratio).
#
# Usage: benches/methods.sh EPOCHS OUT [METHOD ...]      (default: all nine)
#   env SELFSUP (the binary), TRAIN, TEST (CIFAR-10 JPEG folders), SEED (selfsup's seed and
#   lightly_methods.py's, default 0), LIGHTLY_ARGS (more options for lightly_methods.py, e.g.
#   "--lr 0.01")
# Not part of the tests (CI has no lightly).
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=$1
OUT=$2
shift 2
METHODS=("$@")
[ ${#METHODS[@]} -gt 0 ] || METHODS=(simclr moco mocov3 byol simsiam barlowtwins vicreg nnclr dino)
SELFSUP=${SELFSUP:-target/release/selfsup}
TRAIN=${TRAIN:-/tmp/cifar10/train}
TEST=${TEST:-/tmp/cifar10/test}
SEED=${SEED:-0}
mkdir -p "$OUT"
for m in "${METHODS[@]}"; do
  cfg=configs/cifar10-$m.toml
  [ "$m" = simclr ] && cfg=configs/cifar10-convnet.toml
  rm -rf "${OUT:?}/$m"
  echo "== $m: selfsup ($(date +%T))" >&2
  "$SELFSUP" pretrain --data "$TRAIN" --out "$OUT/$m" --config "$cfg" --set data.limit=10000 \
    --set train.epochs="$EPOCHS" --set seed="$SEED" --set train.log_every=1 --set monitor.every=0 \
    --set monitor.knn_every=0 -q
  "$SELFSUP" knn --model "$OUT/$m" --train "$TRAIN" --test "$TEST" --k 200 --t 0.1 -q >"$OUT/$m.knn"
  echo "== $m: lightly ($(date +%T))" >&2
  python3 benches/lightly_methods.py --method "$m" --train "$TRAIN" --test "$TEST" --epochs "$EPOCHS" \
    --seed "$SEED" ${LIGHTLY_ARGS:-} >"$OUT/$m.lightly"
done
python3 - "$OUT" "${METHODS[@]}" <<'EOF'
import json, re, statistics, sys
out, methods = sys.argv[1], sys.argv[2:]
print("| method | selfsup k-NN | lightly k-NN | Δ | selfsup epoch (s) | lightly epoch (s) | ratio |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for m in methods:
    rows = [json.loads(l) for l in open(f"{out}/{m}/metrics.jsonl")]
    ends, last = {}, {}
    for r in rows:
        last[r["epoch"]] = r["elapsed_s"]
    t = [last[0]] + [last[e] - last[e - 1] for e in sorted(last) if e > 0]
    ours = float(re.search(r"k =\s+200: top-1\s+([\d.]+)%", open(f"{out}/{m}.knn").read()).group(1))
    line = open(f"{out}/{m}.lightly").read().strip().splitlines()[-1]
    theirs = float(re.search(r"top-1 ([\d.]+)%", line).group(1))
    their_epoch = float(re.search(r"median epoch ([\d.]+) s", line).group(1))
    mine = statistics.median(t)
    print(f"| {m} | {ours:.2f} | {theirs:.2f} | {ours - theirs:+.2f} | {mine:.1f} | {their_epoch:.1f} | {mine / their_epoch:.2f} |")
EOF
