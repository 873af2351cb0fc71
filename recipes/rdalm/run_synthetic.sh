#!/usr/bin/env bash
# RDAL-M on synthetic events mixed with fsdd speech (2 CPU cores: about 20-40 min in all).
# Usage: recipes/rdalm/run_synthetic.sh [SPEECH_CORPUS] [WORK_DIR]
set -euo pipefail
SPEECH=${1:-../shared/corpora/fsdd}
WORK=${2:-runs/rdalm-synthetic}
export ANONCLI_TORCH_THREADS=${ANONCLI_TORCH_THREADS:-1}
mkdir -p "$WORK"
python -m anoncli.tools.make_mixtures "$SPEECH" "$WORK/events" --out "$WORK/data" \
    --synthesize-events 60 --snr 0 --duration 2 --max-mixtures 300 --seed 0
MIX="$WORK/data/mixtures"
anoncli train --method rdalm "$MIX" --config quick --out "$WORK/private" | tee "$WORK/private.json"
anoncli train --method rdalm "$MIX" --config quick --param adversary=false --param unet_from="$WORK/private" \
    --out "$WORK/baseline" | tee "$WORK/baseline.json"
for run in private baseline; do
  anoncli anonymize "$MIX" --method rdalm --checkpoint "$WORK/$run" --param emit=both --out "$WORK/anon-$run"
  python - "$MIX" "$WORK/anon-$run" <<'PY'
import json, sys
from anoncli.evaluation.feature_probes import evaluate_features
from anoncli.manifest.reader import read_manifest
rows, summary = evaluate_features(sys.argv[1], sys.argv[2], read_manifest(sys.argv[2]), seed=0)
print(json.dumps(summary, indent=2, default=str))
PY
done
