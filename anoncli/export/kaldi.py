"""Kaldi data directory writer (and reader, used to check an export).

Files: wav.scp (absolute paths), utt2spk, spk2utt, and, when every utterance
has the label, spk2gender (m/f), text and utt2emo. Utterance ids get the
speaker id as prefix (`spk-utt`) and all files are sorted in byte order, so
that sorting by utterance also sorts by speaker, as Kaldi's
validate_data_dir.sh requires.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

from anoncli.corpus.utterance import safe_id
from anoncli.errors import InputError
from anoncli.export.source import ExportRow

GENDER_CODES = {"male": "m", "female": "f"}


def kaldi_id(name: str, hashed: bool = False) -> str:
    """A Kaldi id for any name: ASCII letters, digits, `_`, `.` and `-`; folders become `-`.

    Unchanged when the name is already safe (`spk1-utt1`); otherwise (a
    character outside that set, a leading `-` or `.`) the replaced
    characters are followed by a hash of the name, so `日本` and `中国`, or
    `-rf` and `rf`, get distinct ids that are the same on every run and
    machine. `hashed` appends the hash even to a safe name (`d/x` next to
    `d-x`, which both read `d-x`).
    """
    return safe_id(name.replace("/", "-"), hash_of=name if hashed else None)


def kaldi_ids(rows: list[ExportRow]) -> list[tuple[str, str]]:
    """(utterance id, speaker id) per row, Kaldi-safe and with the speaker as utterance prefix.

    An utterance without a speaker is its own speaker (Kaldi's convention):
    its id, with folders and `-` written `_` (`awb/Extra` -> `awb_Extra`),
    serves as both. Without a `-` it can never read as another speaker's
    `spk-...` utterance, so sorting by utterance still sorts by speaker
    (every other character Kaldi ids keep sorts after `-`). Ids keep only
    ASCII letters, digits, `_`, `.` and `-` (see `kaldi_id`); write_kaldi
    checks the orders agree (they can only disagree when one labelled
    speaker id is another's prefix followed by `-`, as `a` and `a-b`).
    """
    ids = []
    seen: dict[str, str] = {}
    names = [row.utt_id.replace("/", "-") if row.speaker else re.sub(r"[/-]", "_", row.utt_id) for row in rows]
    # Names that read the same once rewritten (`d/x`, `d-x`) all get their hash: unique, and stable.
    utt_shared = _shared(safe_id(name) for name in names)
    spk_names = {row.speaker for row in rows if row.speaker}
    spk_shared = _shared(kaldi_id(s) for s in spk_names)
    speakers = {kaldi_id(s, kaldi_id(s) in spk_shared) for s in spk_names}
    for row, name in zip(rows, names):
        utt = safe_id(name)
        if utt in utt_shared or (not row.speaker and utt in speakers):
            utt = safe_id(name, hash_of=row.utt_id)
        if row.speaker:
            speaker = kaldi_id(row.speaker, kaldi_id(row.speaker) in spk_shared)
            kaldi_utt = utt if utt.startswith(speaker + "-") else f"{speaker}-{utt}"
        else:
            speaker = kaldi_utt = utt
        if kaldi_utt in seen:
            raise InputError(f"utterances {seen[kaldi_utt]!r} and {row.utt_id!r} get the same Kaldi id {kaldi_utt!r}")
        seen[kaldi_utt] = row.utt_id
        ids.append((kaldi_utt, speaker))
    return ids


def _shared(ids) -> set[str]:
    """The ids that occur more than once."""
    counts = Counter(ids)
    return {i for i, n in counts.items() if n > 1}


def _write(path: Path, lines: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(line + "\n" for line in lines)


def write_kaldi(rows: list[ExportRow], folder: Path) -> tuple[int, list[str]]:
    """Write the data directory into `folder` (which exists and is empty); return the speakers written (spk2utt lines) and notes."""
    notes = []
    entries = sorted(zip(kaldi_ids(rows), rows), key=lambda e: e[0][0].encode())
    for _, row in entries:
        if re.search(r"\s", str(row.audio)):
            raise InputError(
                f"{row.audio}: Kaldi's wav.scp cannot hold a path with white space (move the output folder)"
            )
    # Sorted by utterance, the speakers must not go down (Kaldi sorts both files the same way).
    for ((utt1, spk1), _), ((utt2, spk2), _) in zip(entries, entries[1:]):
        if spk2.encode() < spk1.encode():
            raise InputError(
                f"speaker ids {spk2!r} and {spk1!r} make Kaldi's utterance and speaker orders disagree "
                f"({spk1!r}'s utterance {utt1!r} sorts before {spk2!r}'s {utt2!r}); rename one of them"
            )
    _write(folder / "wav.scp", [f"{utt} {row.audio}" for (utt, _), row in entries])
    _write(folder / "utt2spk", [f"{utt} {spk}" for (utt, spk), _ in entries])
    by_speaker: dict[str, list[str]] = defaultdict(list)
    for (utt, spk), _ in entries:
        by_speaker[spk].append(utt)
    speakers = sorted(by_speaker, key=str.encode)
    _write(folder / "spk2utt", [f"{spk} {' '.join(by_speaker[spk])}" for spk in speakers])

    gender: dict[str, str] = {}
    for (_, spk), row in entries:
        code = GENDER_CODES.get((row.labels.get("gender") or "").lower())
        if code is not None:
            gender.setdefault(spk, code)
    if gender and len(gender) == len(speakers):
        _write(folder / "spk2gender", [f"{spk} {gender[spk]}" for spk in speakers])
    elif gender:
        notes.append(f"spk2gender not written: {len(speakers) - len(gender)} speaker(s) have no male/female gender")

    for column, name in (("transcript", "text"), ("emotion", "utt2emo")):
        values = [(utt, row.labels.get(column)) for (utt, _), row in entries]
        have = [(u, " ".join(v.split())) for u, v in values if v and v.strip()]
        if have and len(have) == len(values):
            _write(folder / name, [f"{u} {v}" for u, v in have])
        elif have:
            notes.append(f"{name} not written: {len(values) - len(have)} utterance(s) have no {column}")
    return len(speakers), notes


def read_kaldi(folder: Path) -> dict[str, dict[str, str]]:
    """Parse a Kaldi data directory back into {file name: {key: value}}; checks sorting and consistency."""
    tables: dict[str, dict[str, str]] = {}
    for name in ("wav.scp", "utt2spk", "spk2utt", "spk2gender", "text", "utt2emo"):
        path = folder / name
        if not path.is_file():
            continue
        keys, table = [], {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            key, _, value = line.partition(" ")
            if not key or key in table:
                raise InputError(f"{path}: line {number}: empty or repeated key {key!r}")
            keys.append(key)
            table[key] = value
        if keys != sorted(keys, key=str.encode):
            raise InputError(f"{path}: not sorted")
        tables[name] = table
    utt2spk = tables.get("utt2spk", {})
    if set(utt2spk) != set(tables.get("wav.scp", {})):
        raise InputError(f"{folder}: wav.scp and utt2spk list different utterances")
    by_speaker = sorted(utt2spk, key=lambda u: (utt2spk[u].encode(), u.encode()))
    if by_speaker != list(utt2spk):
        raise InputError(f"{folder}: utt2spk is not in the same order when sorted by speaker")
    return tables
