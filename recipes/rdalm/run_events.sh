#!/usr/bin/env bash
# Mixture corpora of the 24-class RDAL-M model: events-dev (UrbanSound8K, 8 classes) and esc50-dev (ESC-50,
# 16 classes; car_horn is in both, and dog_bark is ESC-50's dog: 22 classes) with speech of librispeech-dev, librispeech-multi-dev and ravdess-dev at -5..10 dB
# event-to-speech ratio and -50..-10 dBFS. Test split: ESC-50 fold 4, 30 % of the UrbanSound8K sources of
# each class (a Freesound recording in both corpora is one source), and only the speech of speakers never
# used in training. Then the test split again at fixed levels (-50, -30, -10 dBFS): the same mixtures.
# Usage: recipes/rdalm/data24.sh [CORPORA_DIR] [WORK_DIR]
set -euo pipefail
CORPORA=${1:-../shared/corpora}
WORK=${2:-runs/rdalm24}
TEST_SPEAKERS=ls2414,ls2609,ls3005,ls3331,ls367,ls533,ls118,ls1867,ls1898,ls3526,Actor_13,Actor_14,Actor_15,Actor_16
COMMON=("$CORPORA/librispeech-dev" "$CORPORA/events-dev" --more-events "$CORPORA/esc50-dev"
  --more-speech "$CORPORA/librispeech-multi-dev" --more-speech "$CORPORA/ravdess-dev"
  --snr=-5:10 --duration 2 --per-event 2 --test-fraction 0.3 --test-folds 4
  --test-speakers "$TEST_SPEAKERS" --event-alias dog_bark=dog --seed 0 --overwrite)
python -m anoncli.tools.make_mixtures "${COMMON[@]}" --level=-50:-10 --out "$WORK/data"
for LEVEL in -50 -30 -10; do
  python -m anoncli.tools.make_mixtures "${COMMON[@]}" --level="$LEVEL" --only-split test --out "$WORK/test$LEVEL"
done
