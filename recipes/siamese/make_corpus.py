"""Write one corpus folder for Siamese training from librispeech-dev and ravdess-dev (links, no copies).

    python recipes/siamese/make_corpus.py ../shared/corpora OUT [--val-actors 9-12] [--val-librispeech 20]
        [--multi] [--emodb]

OUT/metadata.csv lists every file of both corpora (paths through the links
OUT/librispeech and OUT/ravdess) with speaker, gender, `corpus` and a
speaker-disjoint `split`:
  train  LibriSpeech train-clean-100 (200 speakers) + RAVDESS actors 01–12
         (minus the --val-actors, which become "val": model selection only)
  test   LibriSpeech test-other (6 speakers, 10 utterances each) + RAVDESS actors 13–16

--multi adds librispeech-multi-dev (link OUT/librispeech-multi): its
TEST_SPEAKERS are "test" and its VALIDATION_SPEAKERS "val" (several
utterances each, for an attacker that enrols on about 60 s per speaker), and
their one librispeech-dev utterance is left out of training; its other
speakers' utterances are "train". --emodb adds emodb-dev's speakers (link
OUT/emodb) to training.

--val-librispeech N moves N train-clean speakers (half of each gender, drawn
with a fixed seed among those with at least 12 s) to "val" as well. Each has
one utterance, so it is cut into --val-segments consecutive pieces (written as
FLAC under OUT/librispeech-val/): several utterances per speaker, 4–6 s long
like the test-other ones, for the within-gender attacker on validation.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
from pathlib import Path

# librispeech-multi-dev speakers (7-16 utterances each): held out for the figures (5 f, 4 m) and for
# choosing the release noise (5 f, 4 m), drawn with random.Random(0) among those with 90 s or more;
# the one left (ls1737, 59 s) trains.
TEST_SPEAKERS = ("ls1898", "ls2416", "ls3526", "ls4680", "ls669", "ls3242", "ls332", "ls7312", "ls8629")
VALIDATION_SPEAKERS = ("ls226", "ls32", "ls3947", "ls5789", "ls6272", "ls118", "ls1867", "ls3664", "ls460")


def actors(text: str) -> set[int]:
    if not text:
        return set()
    low, _, high = text.partition("-")
    return set(range(int(low), int(high or low) + 1))


def _librispeech_val(table: list[dict], n: int) -> set[str]:
    """n train-clean speakers with ≥ 12 s, half of each gender, drawn with seed 0."""
    chosen: set[str] = set()
    for gender in ("female", "male"):
        pool = sorted(
            r["speaker"]
            for r in table
            if r["subset"] != "test-other" and r["gender"] == gender and float(r["duration_s"]) >= 12
        )
        chosen |= set(random.Random(0).sample(pool, n // 2))
    return chosen


def _segments(source: Path, row: dict, out: Path, pieces: int) -> list[dict]:
    """Cut one utterance into `pieces` consecutive equal parts under OUT/librispeech-val/ (validation rows)."""
    import soundfile as sf

    wave, rate = sf.read(source, dtype="float32")
    folder = out / "librispeech-val"
    folder.mkdir(parents=True, exist_ok=True)
    step = len(wave) // pieces
    rows = []
    for k in range(pieces):
        name = f"{row['utt_id']}-part{k + 1}.flac"
        if not (folder / name).exists():
            sf.write(folder / name, wave[k * step : (k + 1) * step], rate)
        rows.append(
            {
                "path": f"librispeech-val/{name}",
                "utt_id": f"{row['utt_id']}-part{k + 1}",
                "speaker": row["speaker"],
                "gender": row["gender"],
                "corpus": "librispeech",
                "split": "val",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpora", type=Path, help="folder holding librispeech-dev/ and ravdess-dev/")
    parser.add_argument("out", type=Path)
    parser.add_argument("--val-actors", default="", help="RAVDESS actors for validation, e.g. 9-12 (default none)")
    parser.add_argument("--test-actors", default="13-16")
    parser.add_argument("--val-librispeech", type=int, default=0, help="train-clean speakers moved to validation")
    parser.add_argument("--val-segments", type=int, default=3, help="pieces each such speaker's utterance is cut into")
    parser.add_argument("--multi", action="store_true", help="add librispeech-multi-dev (held-out speakers)")
    parser.add_argument("--emodb", action="store_true", help="add emodb-dev's speakers to training")
    args = parser.parse_args()
    val, test = actors(args.val_actors), actors(args.test_actors)
    multi_split = dict.fromkeys(TEST_SPEAKERS, "test") | dict.fromkeys(VALIDATION_SPEAKERS, "val")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    corpora = [("librispeech", "librispeech-dev"), ("ravdess", "ravdess-dev")]
    corpora += [("librispeech-multi", "librispeech-multi-dev")] if args.multi else []
    corpora += [("emodb", "emodb-dev")] if args.emodb else []
    for name, folder in corpora:
        link = args.out / name
        if not link.exists():
            os.symlink((args.corpora / folder).resolve(), link)
        with open(args.corpora / folder / "metadata.csv", newline="", encoding="utf-8") as handle:
            table = list(csv.DictReader(handle))
        held_back = _librispeech_val(table, args.val_librispeech) if name == "librispeech" else set()
        for row in table:
            if row["speaker"] in held_back:
                rows += _segments(args.corpora / folder / row["path"], row, args.out, args.val_segments)
                continue
            if name == "librispeech" and args.multi and row["speaker"] in multi_split:
                continue  # a held-out multi-utterance speaker: never in training
            if name == "librispeech":
                split = "test" if row["subset"] == "test-other" else "train"
            elif name == "librispeech-multi":
                split = multi_split.get(row["speaker"], "train")
            elif name == "emodb":
                split = "train"
            else:
                actor = int(row["speaker"].split("_")[-1])
                split = "test" if actor in test else "val" if actor in val else "train"
            rows.append(
                {
                    "path": f"{name}/{row['path']}",
                    "utt_id": row["utt_id"],
                    "speaker": row["speaker"],
                    "gender": row["gender"],
                    "corpus": "librispeech" if name.startswith("librispeech") else name,
                    "split": split,
                }
            )
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
