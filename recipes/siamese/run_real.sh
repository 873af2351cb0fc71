#!/usr/bin/env bash
# Siamese features on real speech: train on LibriSpeech train-clean-100 (200 speakers) + RAVDESS actors 01-08
# (actors 09-12 validate), ship the model, and measure it on speakers never used: RAVDESS actors 13-16 and the
# 6 LibriSpeech test-other speakers. About 10-15 min on 2 CPU cores.
# Usage: recipes/siamese/run_real.sh [CORPORA_DIR] [WORK_DIR] [--ship]
set -euo pipefail
CORPORA=${1:-../shared/corpora}
WORK=${2:-runs/siamese-real}
SHIP=${3:-}
# std of the noise on every released feature vector, chosen on the validation actors 09-12 (docs/results.md)
NOISE=${NOISE:-0.08}
export ANONCLI_TORCH_THREADS=${ANONCLI_TORCH_THREADS:-1}
mkdir -p "$WORK"
python recipes/siamese/make_corpus.py "$CORPORA" "$WORK/corpus" --val-actors 9-12
TRAIN="anoncli train --method siamese $WORK/corpus --config recipes/siamese/cpu.json --seed 0 --out $WORK/model"
$TRAIN --param cache_dir="$WORK/cache" --format json | tee "$WORK/model.json"
CHECKPOINT=(--checkpoint "$WORK/model")
if [ "$SHIP" = "--ship" ]; then
  python -m anoncli.training.shipping "$WORK/model" anoncli/pretrained/siamese --method siamese --modules net,head \
    --data-command "python recipes/siamese/make_corpus.py ../shared/corpora CORPUS --val-actors 9-12" \
    --command "${TRAIN/$WORK\/corpus/CORPUS}" \
    --data recipes/siamese/card_data.json --attribute speaker --labels utility=gender,private=speaker,within=gender \
    --set noise="$NOISE"
  CHECKPOINT=()   # the shipped model from now on
fi
# Held-out speakers through the CLI: evaluate leaves out every speaker the model saw (run.json).
for corpus in ravdess-dev librispeech-dev; do
  anoncli anonymize "$CORPORA/$corpus" --method siamese "${CHECKPOINT[@]}" --out "$WORK/anon-$corpus" --overwrite -q
  anoncli evaluate "$CORPORA/$corpus" "$WORK/anon-$corpus" --out "$WORK/report-$corpus" --probes features \
    --bootstrap 0 --overwrite --format json > "$WORK/report-$corpus.json" || true
done
if [ "$SHIP" = "--ship" ]; then
  python -m anoncli.training.shipping "$WORK/model" anoncli/pretrained/siamese \
    --report "ravdess_actors_13_16=$WORK/report-ravdess-dev" --report "librispeech_test_other=$WORK/report-librispeech-dev" \
    --report-commands "anoncli anonymize CORPUS --method siamese --out ANON; anoncli evaluate CORPUS ANON --out REPORT --probes features --bootstrap 0"
fi
