"""Siamese features on held-out speakers against an attacker that enrols on about 60 s per speaker.

    python recipes/siamese/heldout.py ../shared/corpora WORK [--checkpoint RUN] [--noise 0,0.05,0.08]
        [--ravdess-actors 13-16] [--librispeech ls1898,...] [--enrol-s 60] [--splits 3] [--set test]

For each held-out set (RAVDESS actors from ravdess-dev; multi-utterance
speakers from librispeech-multi-dev) it runs `anoncli anonymize --method
siamese --param noise=0` on that set's files only, then for each release
noise std adds the noise exactly as `anonymize --param noise=S` would (seeded
with the utterance's seed in the manifest) and measures, with
`anoncli.evaluation.feature_probes.evaluate_features`:

* the service's gender head (speaker-disjoint cross-validation), and
* the within-gender closed-set speaker attacker, twice: cross-validated over
  all of a speaker's utterances (what `anoncli evaluate` reports), and
  enrolled on about `--enrol-s` seconds of each speaker and tested on the
  rest (`scoring.probe.enrolment_split`), averaged over `--splits` seeded
  draws of the enrolment set.

The figures go to WORK/heldout.json (and a markdown table on stdout);
`--card CARD.json` also writes them into a shipped model's card (under
`heldout_enrolment`, or `validation_enrolment` for `--set val`). A speaker
the model saw in training is named in the output (`seen_in_training`).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from make_corpus import TEST_SPEAKERS, VALIDATION_SPEAKERS  # this folder (the split of the training corpus)

from anoncli.evaluation.feature_probes import _train_speakers_from_run, evaluate_features
from anoncli.manifest.reader import read_manifest


def actor_names(text: str) -> list[str]:
    """ "13-16" -> ["Actor_13", ..., "Actor_16"]."""
    low, _, high = text.partition("-")
    return [f"Actor_{k:02d}" for k in range(int(low), int(high or low) + 1)]


def files_of(corpus: Path, speakers: list[str]) -> list[str]:
    """Relative paths of `speakers`' files in corpus/metadata.csv."""
    with open(corpus / "metadata.csv", newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["speaker"] in speakers]
    missing = set(speakers) - {r["speaker"] for r in rows}
    if missing:
        sys.exit(f"{corpus}/metadata.csv: no files of {', '.join(sorted(missing))}")
    return [r["path"] for r in rows]


def extract(corpus: Path, files: list[str], out: Path, checkpoint: str | None, seed: int) -> None:
    """Noise-free feature vectors of `files` through the CLI (resumes a finished run)."""
    out.mkdir(parents=True, exist_ok=True)
    listing = out.parent / f"{out.name}.files"
    listing.write_text("\n".join(files) + "\n")
    command = ["anoncli", "anonymize", str(corpus), "--method", "siamese", "--param", "noise=0", "--out", str(out)]
    command += ["--files-from", str(listing), "--seed", str(seed), "--no-score", "-q"]
    command += ["--checkpoint", checkpoint] if checkpoint else []
    subprocess.run(command, check=True)


def noisy_copy(anon: Path, table, std: float, dest: Path) -> None:
    """The run's feature files with release noise `std` added as `anonymize --param noise=std` would
    (seeded with the utterance's seed of the manifest)."""
    import torch

    from anoncli.models.siamese_net import add_feature_noise

    for utt_seed, rel in zip(table["seed"], table["features_path"]):
        vector = torch.from_numpy(np.load(anon / rel))
        noisy = add_feature_noise(vector, std, int(utt_seed)).numpy()
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(dest / rel, noisy)


def measure(anon: Path, std: float, seed: int, enrol_s: float, splits: int) -> dict:
    """Gender service, cross-validated attacker and enrolled attacker (mean over `splits` draws)."""
    table = read_manifest(anon).to_pandas()
    table = table[table["status"] == "ok"].reset_index(drop=True)
    dest = anon.parent / f"{anon.name}-noise{std:g}"
    noisy_copy(anon, table, std, dest)
    probes = ["utility:gender", "attacker:speaker|gender"]
    _, cv = evaluate_features(None, dest, table, probes=probes, seed=seed, exclude_seen=False)
    enrolled = [
        evaluate_features(None, dest, table, probes=probes[1:], seed=s, enrol_s=enrol_s, exclude_seen=False)[1][
            probes[1]
        ]
        for s in range(splits)
    ]
    tested = [e["n"] for e in enrolled]
    return {
        "noise": std,
        "gender": cv["utility:gender"]["accuracy"],
        "attacker_cv": cv[probes[1]]["accuracy"],
        "chance_cv": cv[probes[1]]["chance"],
        "attacker_enrolled": float(np.mean([e["accuracy"] for e in enrolled])),
        "chance_enrolled": float(np.mean([e["chance"] for e in enrolled])),
        "attacker_enrolled_draws": [e["accuracy"] for e in enrolled],
        "enrolled_auc": float(np.mean([e["auc_ovr"] for e in enrolled if e.get("auc_ovr") is not None])),
        "n_test_items": tested,
        "n": cv[probes[1]]["n"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpora", type=Path, help="folder holding ravdess-dev/ and librispeech-multi-dev/")
    parser.add_argument("work", type=Path)
    parser.add_argument("--checkpoint", default=None, help="a training run (default: the shipped model)")
    parser.add_argument("--noise", default="0,0.05,0.08,0.12", help="release noise stds to measure")
    parser.add_argument("--set", choices=("test", "val"), default="test", help="held-out or validation speakers")
    parser.add_argument("--ravdess-actors", default=None, help="default: 13-16 (test), 09-12 (val)")
    parser.add_argument("--librispeech", default=None, help="librispeech-multi-dev speakers (comma list)")
    parser.add_argument("--enrol-s", type=float, default=60.0)
    parser.add_argument("--splits", type=int, default=3, help="draws of the enrolment set to average")
    parser.add_argument("--seed", type=int, default=0, help="anonymize's run seed (the release noise)")
    parser.add_argument("--card", type=Path, default=None, help="a shipped card.json to add the figures to")
    args = parser.parse_args()
    actors = args.ravdess_actors or ("13-16" if args.set == "test" else "9-12")
    librispeech = args.librispeech or ",".join(TEST_SPEAKERS if args.set == "test" else VALIDATION_SPEAKERS)
    sets = {
        f"ravdess_actors_{actors}": ("ravdess-dev", actor_names(actors)),
        f"librispeech_multi_{args.set}": ("librispeech-multi-dev", librispeech.split(",")),
    }
    results = {}
    for name, (folder, speakers) in sets.items():
        corpus = args.corpora / folder
        anon = args.work / name
        extract(corpus, files_of(corpus, speakers), anon, args.checkpoint, args.seed)
        seen = sorted(set(speakers) & set(_train_speakers_from_run(anon)))
        rows = [measure(anon, float(s), args.seed, args.enrol_s, args.splits) for s in args.noise.split(",")]
        results[name] = {"speakers": speakers, "seen_in_training": seen, "enrol_s": args.enrol_s, "rows": rows}
        print(f"\n{name} ({len(speakers)} speakers; seen in training or validation: {', '.join(seen) or 'none'})")
        print("| noise | gender | attacker CV (chance) | attacker enrolled (chance) | enrolled draws |")
        print("|---|---|---|---|---|")
        for r in rows:
            draws = " / ".join(f"{100 * a:.1f}" for a in r["attacker_enrolled_draws"])
            print(
                f"| {r['noise']:g} | {100 * r['gender']:.1f} | {100 * r['attacker_cv']:.1f} ({100 * r['chance_cv']:.1f})"
                f" | {100 * r['attacker_enrolled']:.1f} ({100 * r['chance_enrolled']:.1f}) | {draws} |"
            )
    (args.work / "heldout.json").write_text(json.dumps(results, indent=1))
    if args.card:
        card = json.loads(args.card.read_text())
        command = " ".join(["python recipes/siamese/heldout.py", *sys.argv[1:]])
        key = "heldout_enrolment" if args.set == "test" else "validation_enrolment"
        card[key] = {"command": command, **results}
        args.card.write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main()
