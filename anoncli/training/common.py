"""Run-folder utilities every trainer can share.

A run folder RUN holds:

* `RUN/config.json`      the resolved training config (a resumed run must match it);
* `RUN/checkpoints/last.pt` and `RUN/checkpoints/best.pt` (plain dicts of tensors,
  loadable with `torch.load(..., weights_only=True)`);
* `RUN/log.parquet`      one row per epoch (mean losses, validation figures);
* `RUN/log.jsonl`        the same rows plus every step's losses, one JSON object a line;
* `RUN/model.json`       the model card (data, labels, config, validation figures);
* `RUN/cache/`           features computed once per run (mels), reused on resume.

Checkpoints are written every epoch with temp file + os.replace, so a kill at
any moment leaves the last complete epoch behind and `resume()` continues
from it. `anoncli.training.loop.fit` drives a run folder; trainer configs are
typed dataclasses converted by `anoncli.params`.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from anoncli.atomic import atomic_path, atomic_write_json  # noqa: F401 (atomic_write_json is re-exported)
from anoncli.errors import AnoncliError, AudioError
from anoncli.modelstore import load_checkpoint

CARD_NAME = "model.json"
CONFIG_NAME = "config.json"
LOG_NAME = "log.parquet"
JSONL_NAME = "log.jsonl"


# --------------------------------------------------------------------------- seeding, device


def seed_everything(seed: int) -> torch.Generator:
    """Seed python's `random`, numpy's global generator and torch (CPU and CUDA); return a torch
    Generator seeded with `seed` for data order."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def pick_device(name: str | None) -> torch.device:
    """ "auto"/None -> cuda when visible, else cpu; refuse cuda without a GPU."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AnoncliError("--device cuda: no CUDA GPU is visible on this machine")
    return torch.device(name)


def limit_cpu_threads(threads: int | None) -> None:
    """CPU time is shared: trainers default to few threads (ANONCLI_TORCH_THREADS overrides)."""
    env = os.environ.get("ANONCLI_TORCH_THREADS")
    count = int(env) if env else threads
    if count:
        torch.set_num_threads(max(1, int(count)))


# --------------------------------------------------------------------------- speaker-disjoint split


def speaker_split(
    utterances: Sequence,
    val_speakers: Iterable[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    stratify_label: str | None = None,
) -> tuple[list, list, list[str]]:
    """Split utterances so no speaker is in both parts; return (train, val, val_speaker_ids).

    With `val_speakers` given they are used as they are. Otherwise about
    `val_fraction` of the speakers (at least one, never all) are drawn with
    `seed`; with `stratify_label` (a speaker-level label such as gender) the
    draw takes speakers of the different values in turn, at least one of each
    value that has two or more speakers, so validation and training cover
    them when there are enough speakers.
    """
    by_speaker: dict[str, list] = defaultdict(list)
    for utt in utterances:
        speaker = utt.labels.get("speaker")
        if not speaker:
            raise AnoncliError(
                f"{getattr(utt, 'rel_path', utt)}: no speaker label (a speaker-disjoint split needs one)"
            )
        by_speaker[str(speaker)].append(utt)
    speakers = sorted(by_speaker)
    if len(speakers) < 2:
        raise AnoncliError(f"a speaker-disjoint split needs at least 2 speakers; the corpus has {len(speakers)}")
    if val_speakers:
        chosen = [str(s) for s in val_speakers]
        unknown = [s for s in chosen if s not in by_speaker]
        if unknown:
            raise AnoncliError(f"validation speakers not in the corpus: {', '.join(unknown)}")
        if len(set(chosen)) >= len(speakers):
            raise AnoncliError("validation speakers would leave no training speaker")
    else:
        count = min(len(speakers) - 1, max(1, round(val_fraction * len(speakers))))
        rng = random.Random(seed)
        order = speakers[:]
        rng.shuffle(order)
        if stratify_label:
            groups: dict[str, list[str]] = defaultdict(list)
            for spk in order:
                groups[str(by_speaker[spk][0].labels.get(stratify_label))].append(spk)
            # validation takes a speaker of every value that has two or more and leaves training a speaker
            # of every value (the only speaker of a value stays there), so both sides see each value when
            # the corpus allows it
            shared = [key for key in sorted(groups) if len(groups[key]) >= 2]
            count = max(1, min(len(speakers) - len(groups), max(count, len(shared))))
            interleaved = []
            lists = [groups[key] for key in shared]
            while any(lists):
                for members in lists:
                    if members:
                        interleaved.append(members.pop(0))
            order = interleaved + [groups[key][0] for key in sorted(groups) if key not in shared]
        chosen = order[:count]
    chosen_set = set(chosen)
    train = [u for s in speakers if s not in chosen_set for u in by_speaker[s]]
    val = [u for s in speakers if s in chosen_set for u in by_speaker[s]]
    return train, val, sorted(chosen_set)


def check_split_classes(
    train: Sequence, val: Sequence, label_of, column: str, what: str = "", need_val: bool = True
) -> None:
    """Refuse a split whose training speakers (and, with `need_val`, validation speakers) cover fewer than
    2 classes of `column`, then say on stderr how many speakers and utterances train and validate.

    train, val: utterances (with `.speaker`); label_of(utt) -> its class. A model trained on one class has
    nothing to learn the attribute from (its discriminator loss is 0 from the start), and a validation
    attacker scored on one class measures nothing. `what` names the run in the stderr line ("" says nothing).
    Raises AnoncliError (exit 2), one line naming the speakers of each class and how to fix the split.
    """

    def classes_of(utts) -> dict[str, set[str]]:
        out: dict[str, set[str]] = defaultdict(set)
        for utt in utts:
            out[str(label_of(utt))].add(str(utt.speaker))
        return out

    train_classes, val_classes = classes_of(train), classes_of(val)
    for part, classes, needed in (("training", train_classes, True), ("validation", val_classes, need_val)):
        if needed and len(classes) < 2:
            every = classes_of(list(train) + list(val))
            corpus = "; ".join(f"{label}: {', '.join(sorted(spk))}" for label, spk in sorted(every.items()))
            only = ", ".join(sorted(classes)) or "none"
            sides = "training and validation" if need_val else "training"
            speakers = sum(len(spk) for spk in every.values())
            possible = len(every) >= 2 and (
                all(len(spk) >= 2 for spk in every.values()) if need_val else speakers > len(every)
            )
            if possible:
                fix = f"name validation speakers that leave {sides} a speaker of each class with --param val_speakers=SPK,..."
            else:
                fix = f"use a corpus with at least {2 if need_val else 1} speakers of each {column} class ({sides} need each)"
            raise AnoncliError(
                f"the {part} speakers cover only one {column} class ({only}; speakers by class: {corpus}): {fix}"
            )
    if what:
        report_split(what, train, val)


def report_split(what: str, train: Sequence, val: Sequence) -> None:
    """One stderr line: how many speakers and utterances `what` trains and validates on."""
    from anoncli.progress import write

    def count(utts) -> str:
        return f"{len({str(u.speaker) for u in utts})} speakers ({len(utts)} utterances)"

    write(f"{what}: training on {count(train)}, validating on {count(val)}")


# --------------------------------------------------------------------------- training audio


def resampled_waves(utterances, sample_rate: int, desc: str, progress: bool = True):
    """Yield (utterance, 1-D float32 tensor at `sample_rate` Hz) for each utterance that decodes.

    A file that cannot be decoded (AudioError) is skipped with a line on
    stderr, so one bad file does not stop feature extraction for training.
    """
    import sys

    from anoncli.audio import resample
    from anoncli.corpus.reading import read_utterance_audio
    from anoncli.progress import progress_bar

    for utt in progress_bar(utterances, desc=desc, unit="files", enabled=progress, leave=False):
        try:
            audio = read_utterance_audio(utt)
        except AudioError as err:
            print(f"skipping {err}", file=sys.stderr)
            continue
        yield utt, resample(torch.from_numpy(audio.samples), audio.sample_rate, sample_rate)


def load_waves(utterances, sample_rate: int, desc: str = "reading audio") -> list[torch.Tensor]:
    """Each utterance decoded, mixed down and resampled to `sample_rate` Hz: 1-D float32 tensors, in order.

    Unlike `resampled_waves`, a file that cannot be decoded stops the run (AudioError naming it):
    callers keep the list aligned with their utterances and labels.
    """
    from anoncli.audio import read_audio, resample
    from anoncli.progress import progress_bar

    waves = []
    for utt in progress_bar(utterances, desc=desc, leave=False, enabled=None):
        audio = read_audio(utt.path)
        waves.append(resample(torch.from_numpy(audio.samples), audio.sample_rate, sample_rate))
    return waves


# --------------------------------------------------------------------------- atomic writes


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through a temporary sibling renamed over `path` (a killed run leaves the old checkpoint)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


# --------------------------------------------------------------------------- run folder


class RunFolder:
    """Checkpoints, log and model card of one training run, with resume."""

    def __init__(
        self,
        out: Path,
        config: dict,
        overwrite: bool = False,
        resume_keys: Sequence[str] | None = None,
        create: bool = True,
    ):
        """Check `out` can hold a run of `config` (with `overwrite`, clear what a previous run left);
        `create` makes the folder and writes config.json now, else `create()` does it later (after
        the data is checked, so a bad corpus leaves no run folder behind).

        Raises AnoncliError when `out` is a file or holds a checkpointed run whose `resume_keys` settings differ.
        """
        self.root = Path(out)
        self.config = config
        if self.root.exists() and not self.root.is_dir():
            raise AnoncliError(f"{self.root}: exists and is not a folder")
        saved = self.root / CONFIG_NAME
        if overwrite and self.root.exists():
            for name in ("checkpoints/last.pt", "checkpoints/best.pt", LOG_NAME, JSONL_NAME, CARD_NAME, CONFIG_NAME):
                target = self.root / name
                if target.exists():
                    target.unlink()
        elif saved.exists() and (self.root / "checkpoints" / "last.pt").exists():
            # a run pins its config once it has a checkpoint to resume; one that stopped before (a crash,
            # bad settings) holds nothing to continue, so a corrected command starts it afresh
            previous = json.loads(saved.read_text())
            keys = resume_keys if resume_keys is not None else [k for k in config if k not in ("epochs",)]
            changed = [
                k for k in keys if json.dumps(previous.get(k), default=str) != json.dumps(config.get(k), default=str)
            ]
            if changed:
                raise AnoncliError(
                    f"{self.root}: holds a run with a different config ({', '.join(changed)}); "
                    "use another --out or --overwrite to start over"
                )
        self._log_rows: list[dict] = []
        self._created = False
        if create:
            self.create()

    def create(self) -> None:
        """Make the run folder, write config.json and read the log a previous session left."""
        if self._created:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.root / CONFIG_NAME, self.config)
        if (self.root / LOG_NAME).exists():
            import pyarrow.parquet as pq

            self._log_rows = pq.read_table(self.root / LOG_NAME).to_pylist()
        self._created = True

    # paths
    @property
    def checkpoint_dir(self) -> Path:
        """RUN/checkpoints."""
        return self.root / "checkpoints"

    @property
    def last_path(self) -> Path:
        """RUN/checkpoints/last.pt: the last complete epoch."""
        return self.checkpoint_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        """RUN/checkpoints/best.pt: the best validated epoch."""
        return self.checkpoint_dir / "best.pt"

    @property
    def cache_dir(self) -> Path:
        """RUN/cache (created on first use)."""
        path = self.root / "cache"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # checkpoints
    def resume(self, map_location: str | torch.device = "cpu") -> dict | None:
        """The last complete epoch's state, or None for a fresh run."""
        if not self.last_path.exists():
            return None
        return load_checkpoint(self.last_path, map_location)

    def save(self, state: dict, best: bool = False, last: bool = True) -> None:
        """Write `last.pt` (unless not `last`: a best state in the middle of an epoch) and `best.pt` when `best`."""
        if last:
            atomic_torch_save(state, self.last_path)
        if best:
            atomic_torch_save(state, self.best_path)

    # log
    def log(self, rows: dict | list[dict]) -> None:
        """Append epoch rows to RUN/log.jsonl and rewrite RUN/log.parquet atomically (logs are small)."""
        if isinstance(rows, dict):
            rows = [rows]
        stamp = time.time()
        rows = [{"time": stamp, **r} for r in rows]
        self._log_rows.extend(rows)
        self._append_jsonl([{"kind": "epoch", **r} for r in rows])
        self._write_log()

    def log_step(self, row: dict) -> None:
        """Append one step's figures (losses, mid-epoch validation) to RUN/log.jsonl."""
        self._append_jsonl([{"kind": "step", "time": time.time(), **row}])

    def _append_jsonl(self, rows: list[dict]) -> None:
        with open(self.root / JSONL_NAME, "a") as handle:
            for row in rows:
                handle.write(json.dumps(row, default=_json_value) + "\n")

    def truncate_log(self, epoch: int) -> None:
        """Drop rows of epochs after `epoch` (left by a killed run that did not checkpoint them)."""
        self._log_rows = [r for r in self._log_rows if int(r.get("epoch", 0) or 0) <= epoch]
        self._write_log()
        path = self.root / JSONL_NAME
        if path.exists():
            kept = []
            for line in path.read_text().splitlines():
                try:
                    if int(json.loads(line).get("epoch", 0) or 0) <= epoch:
                        kept.append(line + "\n")
                except ValueError:  # a line cut short by a kill
                    continue
            with atomic_path(path) as tmp:
                tmp.write_text("".join(kept))

    def _write_log(self) -> None:
        if not self._log_rows and not (self.root / LOG_NAME).exists():
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns: dict[str, list] = {}
        keys: list[str] = []
        for row in self._log_rows:
            for key in row:
                if key not in columns:
                    columns[key] = []
                    keys.append(key)
        for key in keys:
            columns[key] = [row.get(key) for row in self._log_rows]
        table = pa.table(columns)
        with atomic_path(self.root / LOG_NAME) as tmp:
            pq.write_table(table, tmp)

    @property
    def log_rows(self) -> list[dict]:
        """A copy of the log rows written so far (one dict per row)."""
        return list(self._log_rows)

    # card
    def write_card(self, card: dict) -> None:
        """Write the run's model card (model.json) atomically."""
        atomic_write_json(self.root / CARD_NAME, card)


def _json_value(value: Any) -> Any:
    """JSON for what json cannot write itself (tensors, numpy scalars, paths)."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)
