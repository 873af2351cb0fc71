"""Write one corpus folder for Siamese training from librispeech-dev and ravdess-dev (links, no copies).

    python recipes/siamese/make_corpus.py ../shared/corpora OUT [--val-actors 9-12]

OUT/metadata.csv lists every file of both corpora (paths through the links
OUT/librispeech and OUT/ravdess) with speaker, gender, `corpus` and a
speaker-disjoint `split`:
  train  LibriSpeech train-clean-100 (200 speakers) + RAVDESS actors 01–12
         (minus the --val-actors, which become "val": model selection only)
  test   LibriSpeech test-other (6 speakers, 10 utterances each) + RAVDESS actors 13–16
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path


def actors(text: str) -> set[int]:
    if not text:
        return set()
    low, _, high = text.partition("-")
    return set(range(int(low), int(high or low) + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpora", type=Path, help="folder holding librispeech-dev/ and ravdess-dev/")
    parser.add_argument("out", type=Path)
    parser.add_argument("--val-actors", default="", help="RAVDESS actors for validation, e.g. 9-12 (default none)")
    parser.add_argument("--test-actors", default="13-16")
    args = parser.parse_args()
    val, test = actors(args.val_actors), actors(args.test_actors)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, folder in (("librispeech", "librispeech-dev"), ("ravdess", "ravdess-dev")):
        link = args.out / name
        if not link.exists():
            os.symlink((args.corpora / folder).resolve(), link)
        with open(args.corpora / folder / "metadata.csv", newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if name == "librispeech":
                    split = "test" if row["subset"] == "test-other" else "train"
                else:
                    actor = int(row["speaker"].split("_")[-1])
                    split = "test" if actor in test else "val" if actor in val else "train"
                rows.append({"path": f"{name}/{row['path']}", "utt_id": row["utt_id"], "speaker": row["speaker"],
                             "gender": row["gender"], "corpus": name, "split": split})
    with open(args.out / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    counts = {}
    for row in rows:
        counts[row["split"]] = counts.get(row["split"], 0) + 1
    print(counts)


if __name__ == "__main__":
    main()
