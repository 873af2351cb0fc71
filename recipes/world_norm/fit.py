"""Fit a `world_norm` model (the pseudo-speaker distribution) on a corpus's speakers and write it.

Speaker-level statistics (`anoncli.synthesis.world_norm.pool_stats` over each
speaker's utterances) of every speaker of CORPUS with a gender label, except
the speakers of --exclude (a folder with a metadata.csv, or a comma list),
then `fit_pseudo_speakers`. Deterministic (files in sorted order, no draws).

Usage: python recipes/world_norm/fit.py CORPUS --out MODEL_DIR [--exclude HELD_DIR_OR_LIST] [--covariance diagonal]
       anoncli anonymize HELD --method world_norm --checkpoint MODEL_DIR/model.safetensors --out ANON
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from anoncli.audio import read_audio
from anoncli.methods.world_norm import save_model
from anoncli.synthesis import world_features
from anoncli.synthesis.world_norm import fit_pseudo_speakers, pool_stats


def rows(folder: Path) -> list[dict]:
    with open(folder / "metadata.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--exclude", default="", help="folder with a metadata.csv, or comma-separated speakers")
    parser.add_argument(
        "--covariance",
        default="full",
        choices=("full", "diagonal"),
        help="impose the coded envelope's mean and covariance (full) or mean and std (diagonal)",
    )
    args = parser.parse_args()
    exclude = (
        {r["speaker"] for r in rows(Path(args.exclude))}
        if args.exclude and Path(args.exclude).is_dir()
        else {s for s in args.exclude.split(",") if s}
    )
    files: dict[str, list[Path]] = {}
    genders: dict[str, str] = {}
    for row in sorted(rows(args.corpus), key=lambda r: r.get("path") or r.get("file_name")):
        if row["speaker"] in exclude or row.get("gender") not in ("female", "male"):
            continue
        files.setdefault(row["speaker"], []).append(args.corpus / (row.get("path") or row["file_name"]))
        genders[row["speaker"]] = row["gender"]
    start = time.time()
    stats = {}
    for index, (speaker, paths) in enumerate(sorted(files.items())):
        features = []
        for path in paths:
            audio = read_audio(path)
            if audio.sample_rate != 16000:
                sys.exit(f"{path}: {audio.sample_rate} Hz; this recipe expects 16 kHz")
            features.append(world_features.analyse(audio.samples, audio.sample_rate, aperiodicity=False))
        stats[speaker] = pool_stats(features)
        if index % 20 == 0:
            print(f"{index}/{len(files)} speakers, {time.time() - start:.0f} s", file=sys.stderr)
    sampler = fit_pseudo_speakers(stats, genders)
    card = {
        "trained_on": str(args.corpus),
        "excluded_speakers": sorted(exclude),
        "speakers": {g: int(n) for g, n in zip(sampler.genders, sampler.speakers)},
        "command": " ".join(sys.argv),
    }
    print(save_model(sampler, args.out, card, covariance=args.covariance))


if __name__ == "__main__":
    main()
