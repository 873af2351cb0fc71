#!/usr/bin/env bash
# RDAL-M on real sound events (events-dev: 8 UrbanSound8K classes) mixed with real speech (librispeech-dev,
# ravdess-dev) at -5/0/5/10 dB. Test mixtures: event sources and speakers never used in training (RAVDESS
# actors 13-16, LibriSpeech test-other). Trains the private model, ships it with --ship, and evaluates the
# embeddings and the masked audio. About 15-25 min on 2 CPU cores.
# Usage: recipes/rdalm/run_real.sh [CORPORA_DIR] [WORK_DIR] [--ship]
set -euo pipefail
CORPORA=${1:-../shared/corpora}
WORK=${2:-runs/rdalm-real}
SHIP=${3:-}
export ANONCLI_TORCH_THREADS=${ANONCLI_TORCH_THREADS:-1}
TEST_SPEAKERS=ls2414,ls2609,ls3005,ls3331,ls367,ls533,Actor_13,Actor_14,Actor_15,Actor_16
python -m anoncli.tools.make_mixtures "$CORPORA/librispeech-dev" "$CORPORA/events-dev" --more-speech "$CORPORA/ravdess-dev" \
    --out "$WORK/data" --snr=-5,0,5,10 --duration 2 --per-event 2 --test-fraction 0.3 \
    --test-speakers "$TEST_SPEAKERS" --seed 0 --overwrite
MIX="$WORK/data/mixtures"
TRAIN="anoncli train --method rdalm $MIX --config recipes/rdalm/cpu.json --seed 0 --out $WORK/model"
$TRAIN --format json | tee "$WORK/model.json"
CHECKPOINT=(--checkpoint "$WORK/model")
if [ "$SHIP" = "--ship" ]; then
  python -m anoncli.training.shipping "$WORK/model" anoncli/pretrained/rdalm --method rdalm --modules pipeline \
    --data-command "python -m anoncli.tools.make_mixtures ../shared/corpora/librispeech-dev ../shared/corpora/events-dev --more-speech ../shared/corpora/ravdess-dev --out DATA --snr=-5,0,5,10 --duration 2 --per-event 2 --test-fraction 0.3 --test-speakers $TEST_SPEAKERS --seed 0" \
    --command "${TRAIN/$MIX/DATA/mixtures}" \
    --data recipes/rdalm/card_data.json --attribute speech --labels utility=event,private=speech
  CHECKPOINT=()
fi
anoncli anonymize "$MIX" --method rdalm "${CHECKPOINT[@]}" --param emit=both --out "$WORK/anon" --overwrite -q
anoncli evaluate "$MIX" "$WORK/anon" --out "$WORK/report" --probes features --bootstrap 0 --overwrite \
    --format json > "$WORK/report.json" || true
if [ "$SHIP" = "--ship" ]; then
  python -m anoncli.training.shipping "$WORK/model" anoncli/pretrained/rdalm --report "test_mixtures=$WORK/report" \
    --report-commands "anoncli anonymize MIX --method rdalm --param emit=both --out ANON; anoncli evaluate MIX ANON --out REPORT --probes features --bootstrap 0"
fi
