#!/usr/bin/env bash
# RDAL-M on 22 event classes that generalise: events-dev (UrbanSound8K, 8 classes) and esc50-dev (ESC-50,
# 16 classes; car_horn is in both, and UrbanSound8K's dog_bark is ESC-50's dog), mixed with speech of
# librispeech-dev, librispeech-multi-dev and ravdess-dev at -5..10 dB event-to-speech ratio and -50..-10 dBFS.
# Test split: ESC-50 fold 4, 30 % of the UrbanSound8K sources of each class (a Freesound recording in both
# corpora is one source), and only the speech of speakers never used in training. The test split is made
# again at -50, -30 and -10 dBFS (the same mixtures), anonymized and evaluated at each level: the trained
# speech attacker and silero-vad on the masked and the unmasked audio, the event service and the feature
# attacker on the embeddings. About 25 min on 2 CPU cores (training about 10).
# Usage: recipes/rdalm/run_events.sh [CORPORA_DIR] [WORK_DIR] [--ship]
set -euo pipefail
CORPORA=${1:-../shared/corpora}
WORK=${2:-runs/rdalm-events}
SHIP=${3:-}
LEVELS=(-50 -30 -10)
TEST_SPEAKERS=ls2414,ls2609,ls3005,ls3331,ls367,ls533,ls118,ls1867,ls1898,ls3526,Actor_13,Actor_14,Actor_15,Actor_16
MIXARGS="--more-events $CORPORA/esc50-dev --more-speech $CORPORA/librispeech-multi-dev --more-speech $CORPORA/ravdess-dev \
--snr=-5:10 --duration 2 --per-event 2 --test-fraction 0.3 --test-folds 4 --test-speakers $TEST_SPEAKERS \
--event-alias dog_bark=dog --seed 0"
MAKE="python -m anoncli.tools.make_mixtures $CORPORA/librispeech-dev $CORPORA/events-dev $MIXARGS"
# shellcheck disable=SC2086
$MAKE --level=-50:-10 --out "$WORK/data" --overwrite
for LEVEL in "${LEVELS[@]}"; do
  # shellcheck disable=SC2086
  $MAKE --level="$LEVEL" --only-split test --out "$WORK/test$LEVEL" --overwrite
done
TRAIN="anoncli train --method rdalm $WORK/data/mixtures --config recipes/rdalm/cpu-events.json --seed 0 --out $WORK/model"
$TRAIN --format json | tee "$WORK/model.json"
CHECKPOINT=(--checkpoint "$WORK/model")
if [ "$SHIP" = "--ship" ]; then
  python -m anoncli.training.shipping "$WORK/model" anoncli/pretrained/rdalm --method rdalm --modules pipeline \
    --data-command "${MAKE//$CORPORA/../shared/corpora} --level=-50:-10 --out DATA" \
    --command "${TRAIN//$WORK\/data/DATA}" \
    --data recipes/rdalm/card_data_events.json --attribute speech --labels utility=event,private=speech
  CHECKPOINT=()
fi
REPORTS=()
for LEVEL in "${LEVELS[@]}"; do
  anoncli anonymize "$WORK/test$LEVEL/mixtures" --method rdalm "${CHECKPOINT[@]}" --param emit=both \
    --out "$WORK/anon$LEVEL" --overwrite --no-score -q
  anoncli evaluate "$WORK/test$LEVEL/mixtures" "$WORK/anon$LEVEL" --out "$WORK/report$LEVEL" --probes features,vad \
    --bootstrap 0 --overwrite --format json > "$WORK/report$LEVEL.json" || true
  REPORTS+=(--report "test_${LEVEL#-}dbfs=$WORK/report$LEVEL")
done
if [ "$SHIP" = "--ship" ]; then
  python -m anoncli.training.shipping "$WORK/model" anoncli/pretrained/rdalm "${REPORTS[@]}" \
    --report-commands "anoncli anonymize MIX --method rdalm --param emit=both --out ANON --no-score; anoncli evaluate MIX ANON --out REPORT --probes features,vad --bootstrap 0"
fi
CARD=(); [ "$SHIP" = "--ship" ] && CARD=(--card anoncli/pretrained/rdalm/card.json)
python recipes/rdalm/levels_table.py "$WORK" "${LEVELS[@]}" "${CARD[@]}"
