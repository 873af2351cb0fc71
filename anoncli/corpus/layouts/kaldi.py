"""Kaldi data directory: `wav.scp`, `utt2spk`, optional `spk2gender`, `text`, `utt2emo`.

Only plain paths are read from wav.scp (absolute, or relative to the data
folder). A piped entry (`utt sox x.flac -t wav - |`) runs shell code, so it is
refused unless the caller opts in with `allow_commands=True`
(`--allow-commands`). Utterance ids are the utt2spk keys; each utterance's
`rel_path` (where its output goes) is `<speaker>/<utt>.<ext>` with both parts
made filesystem-safe, because the original paths may lie anywhere; its
`source_path` is the file wav.scp names (relative to the data folder when it
lies inside it, else absolute), or the piped command as written.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from anoncli.corpus.labels import normalise_emotion, normalise_gender
from anoncli.corpus.layouts.base import Detection, Layout, LayoutResult, Scan
from anoncli.corpus.utterance import Utterance
from anoncli.errors import InputError

REQUIRED = ("wav.scp", "utt2spk")
# Letters and digits of any script stay (file systems store Unicode names); separators,
# white space, punctuation and control characters do not.
_UNSAFE = re.compile(r"[^\w.-]+")


def safe_component(name: str) -> str:
    """A single path component that cannot escape a folder or hide itself (`日本` stays `日本`)."""
    cleaned = _UNSAFE.sub("_", unicodedata.normalize("NFC", name)).lstrip(".") or "_"
    while len(cleaned.encode("utf-8", "surrogatepass")) > 200:  # file names are limited in bytes, not characters
        cleaned = cleaned[:-1]
    return cleaned


def source_of(path: Path, root: Path) -> str:
    """The wav.scp file as the manifest records it: relative to the data folder inside it, else absolute."""
    absolute = os.path.abspath(path)
    base = os.path.abspath(root)
    if absolute.startswith(base + os.sep):
        return Path(os.path.relpath(absolute, base)).as_posix()
    return absolute


def read_table(path: Path) -> Iterator[tuple[int, str, str]]:
    """Yield (line number, key, rest) of a Kaldi `key value...` table, skipping blank lines."""
    try:
        handle = open(path, "rb")
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
            except UnicodeDecodeError as err:
                raise InputError(
                    f"{path}: line {number}: not UTF-8 text (byte 0x{raw[err.start]:02x} "
                    f"at column {err.start + 1}); save the file as UTF-8"
                ) from None
            if "\x00" in line:
                raise InputError(f"{path}: line {number}: holds a NUL byte (a binary file?)")
            if not line:
                continue
            key, *rest = line.split(None, 1)  # Kaldi separates the key by any white space
            yield number, key, rest[0].strip() if rest else ""


def read_map(path: Path) -> dict[str, str]:
    """A two-column Kaldi table (utt2spk, text, ...) as {key: rest of line}; raises InputError on a repeated key."""
    values: dict[str, str] = {}
    for number, key, rest in read_table(path):
        if key in values:
            raise InputError(f"{path}: line {number}: {key!r} is listed twice")
        values[key] = rest
    return values


class Kaldi(Layout):
    """A Kaldi data folder: wav.scp and utt2spk, with optional spk2gender, text and utt2emo."""

    name = "kaldi"
    title = "Kaldi data directory (wav.scp + utt2spk)"
    columns = ("speaker", "gender", "transcript", "emotion")
    needs_walk = False

    def detect(self, scan: Scan) -> Detection | None:
        if all((scan.root / name).is_file() for name in REQUIRED):
            return Detection(self.name, 1.0, "wav.scp and utt2spk in the folder")
        if (scan.root / "wav.scp").is_file():
            return Detection(self.name, 0.5, "wav.scp without utt2spk")
        return None

    def load(self, scan: Scan, allow_commands: bool = False, **options) -> LayoutResult:
        root = scan.root
        for name in REQUIRED:
            if not (root / name).is_file():
                raise InputError(f"{root}: a Kaldi data folder needs {name}")
        if (root / "segments").is_file():
            raise InputError(
                f"{root / 'segments'}: Kaldi segments (several utterances per recording) are not supported"
            )
        scp = root / "wav.scp"
        sources: dict[str, tuple[int, str]] = {}
        for number, key, rest in read_table(scp):
            if key in sources:
                raise InputError(f"{scp}: line {number}: {key!r} is listed twice")
            if not rest:
                raise InputError(f"{scp}: line {number}: no path after {key!r}")
            sources[key] = (number, rest)
        utt2spk = read_map(root / "utt2spk")
        gender_of = (
            {k: normalise_gender(v) for k, v in read_map(root / "spk2gender").items()}
            if (root / "spk2gender").is_file()
            else {}
        )
        text = read_map(root / "text") if (root / "text").is_file() else {}
        emotion = (
            {k: normalise_emotion(v) for k, v in read_map(root / "utt2emo").items()}
            if (root / "utt2emo").is_file()
            else {}
        )
        missing = [u for u in utt2spk if u not in sources]
        if missing:
            raise InputError(
                f"{root / 'utt2spk'}: {len(missing)} utterance(s) have no wav.scp entry (first: {missing[0]!r})"
            )
        extra = [u for u in sources if u not in utt2spk]
        if extra:
            raise InputError(f"{scp}: {len(extra)} entr(ies) are not in utt2spk (first: {extra[0]!r})")

        utterances = []
        taken: dict[str, str] = {}
        commands = 0
        for utt, speaker in utt2spk.items():
            number, source = sources[utt]
            command = None
            recorded = source  # a command is recorded as written
            if source.endswith("|"):
                if not allow_commands:
                    raise InputError(
                        f"{scp}: line {number}: {utt!r} is a piped command; running it would execute shell code "
                        "(pass --allow-commands if you trust this file)"
                    )
                command = source[:-1].strip()
                path, suffix = scp, ".wav"
                commands += 1
            else:
                if re.search(r":\d+$", source) and not Path(source).exists():
                    raise InputError(f"{scp}: line {number}: archive offsets ({source!r}) are not supported")
                path = Path(source)
                if not path.is_absolute():
                    path = root / path
                if not path.is_file():
                    if path.is_symlink() and not path.exists():
                        raise InputError(
                            f"{scp}: line {number}: {source!r} is a broken symbolic link "
                            f"(points to {os.readlink(path)!r}, which does not exist)"
                        )
                    raise InputError(
                        f"{scp}: line {number}: {source!r} does not exist (relative paths are read from {root})"
                    )
                suffix = path.suffix.lower() or ".wav"
                recorded = source_of(path, root)
            rel = f"{safe_component(speaker)}/{safe_component(utt)}{suffix}"
            if rel in taken:
                raise InputError(f"{scp}: {utt!r} and {taken[rel]!r} map to the same output name {rel!r}")
            taken[rel] = utt
            labels = {
                "speaker": speaker,
                "gender": gender_of.get(speaker),
                "transcript": text.get(utt),
                "emotion": emotion.get(utt),
            }
            utterances.append(Utterance(utt, path, rel, labels, command=command, source=recorded))
        columns = ["speaker", "gender", "transcript", "emotion"]
        present = {"gender": bool(gender_of), "transcript": bool(text), "emotion": bool(emotion)}
        columns = [c for c in columns if present.get(c, True)]
        for utt in utterances:
            for key in list(utt.labels):
                if key not in columns:
                    del utt.labels[key]
        notes = (
            [f"{commands} wav.scp entries are piped commands, run because commands were allowed"] if commands else []
        )
        return LayoutResult(utterances, columns, str(scp), notes)
