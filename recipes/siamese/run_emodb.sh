#!/usr/bin/env bash
# Siamese (contrastive) vs the same network trained with cross-entropy, on emodb-dev.
# Usage: recipes/siamese/run_emodb.sh [CORPUS] [RUNS_DIR]   (about 5-15 min per run on 2 CPU cores)
set -euo pipefail
CORPUS=${1:-../shared/corpora/emodb-dev}
RUNS=${2:-runs/siamese}
mkdir -p "$RUNS"
export ANONCLI_TORCH_THREADS=${ANONCLI_TORCH_THREADS:-1}
for setting in A:0.34 B:0.67; do
  name=${setting%%:*}; frac=${setting#*:}
  for loss in contrastive ce; do
    anoncli train --method siamese "$CORPUS" --utility gender --config quick \
      --param val_fraction="$frac" --param loss="$loss" --out "$RUNS/$name-$loss" | tee "$RUNS-$name-$loss.json"
  done
done
# The deepest network of the paper's sweep (G = 5), split A.
for loss in contrastive ce; do
  anoncli train --method siamese "$CORPUS" --utility gender --config quick --param groups=5 \
    --param loss="$loss" --out "$RUNS/A5-$loss" | tee "$RUNS-A5-$loss.json"
done
# Features through the job engine, then the service/attacker probes on the held-out speakers (setting B).
anoncli anonymize "$CORPUS" --method siamese --checkpoint "$RUNS/B-contrastive" --out "$RUNS/anon-B-contrastive"
python - "$CORPUS" "$RUNS/anon-B-contrastive" <<'PY'
import json, sys
from anoncli.evaluation.feature_probes import evaluate_features
from anoncli.manifest.reader import read_manifest
rows, summary = evaluate_features(sys.argv[1], sys.argv[2], read_manifest(sys.argv[2]), seed=0)
print(json.dumps(summary, indent=2, default=str))
PY
