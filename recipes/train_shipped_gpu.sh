#!/bin/sh
# Train the three shipped source-filter models on one GPU (recipes/<method>/gpu.json), one after the other,
# then copy each export into the package once it has been evaluated (recipes/ship.py; see docs/results.md).
# Usage: sh recipes/train_shipped_gpu.sh CORPORA_DIR OUT_DIR      (CORPORA_DIR holds ravdess-dev and librispeech-dev)
set -e
CORPORA=${1:?corpora folder}
OUT=${2:?output folder}
mkdir -p "$OUT"
anoncli train --method psegan-sf   "$CORPORA/ravdess-dev"     --out "$OUT/psegan"   --config recipes/psegan/gpu.json   --seed 0 --device cuda 2>&1 | tee "$OUT/psegan.log"
anoncli train --method gengan-sf   "$CORPORA/librispeech-dev" --out "$OUT/gengan"   --config recipes/gengan/gpu.json   --seed 0 --device cuda 2>&1 | tee "$OUT/gengan.log"
anoncli train --method pcmelgan-sf "$CORPORA/librispeech-dev" --out "$OUT/pcmelgan" --config recipes/pcmelgan/gpu.json --seed 0 --device cuda 2>&1 | tee "$OUT/pcmelgan.log"
