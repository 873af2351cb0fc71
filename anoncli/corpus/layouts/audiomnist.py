"""AudioMNIST: `data/NN/D_NN_I.wav` + `data/audioMNIST_meta.txt`.

D digit, NN speaker (01..60), I repetition (Becker et al., 2018). The meta
file is a JSON object keyed by speaker with gender, age, accent, native
speaker, origin, recording date and room; some copies carry trailing commas,
which are tolerated.
"""

from __future__ import annotations

import json
import re

from anoncli.corpus.labels import normalise_gender
from anoncli.corpus.layouts.base import FilenameLayout
from anoncli.corpus.layouts.fsdd import DIGIT_WORDS
from anoncli.errors import InputError

META = "audioMNIST_meta.txt"


def read_meta(path) -> dict[str, dict]:
    """AudioMNIST's meta file as {two-digit speaker: fields}; trailing commas are tolerated.

    Raises InputError naming the file when it cannot be read or is not a JSON object.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = json.loads(re.sub(r",(\s*[}\]])", r"\1", text))
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: line {err.lineno}: not a JSON object ({err.msg})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object keyed by speaker")
    return {str(k).zfill(2): (v if isinstance(v, dict) else {}) for k, v in data.items()}


def _text(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


class AudioMNIST(FilenameLayout):
    """AudioMNIST (Becker et al., 2018): speaker, digit and repetition from the name, the rest from audioMNIST_meta.txt."""

    name = "audiomnist"
    title = "AudioMNIST (NN/D_NN_I.wav)"
    columns = ("speaker", "gender", "age", "accent", "native_speaker", "origin", "digit", "transcript", "repetition")
    pattern = re.compile(r"(?:^|/)(\d)_(\d\d)_(\d+)\.wav$", re.IGNORECASE)

    def context(self, scan):
        path = scan.side_file(META)
        if path is None:
            return {"meta": {}, "_notes": [f"no {META} found: gender, age and accent are left empty"]}
        return {"meta": read_meta(path), "source": path}

    def source_note(self, context):
        return str(context["source"]) if context.get("source") else None

    def labels_for(self, match, context):
        digit, speaker, repetition = match.groups()
        meta = context["meta"].get(speaker, {})
        return {
            "speaker": speaker,
            "gender": normalise_gender(_text(meta.get("gender"))),
            "age": _text(meta.get("age")),
            "accent": _text(meta.get("accent")),
            "native_speaker": _text(meta.get("native speaker")),
            "origin": _text(meta.get("origin")),
            "digit": digit,
            "transcript": DIGIT_WORDS[int(digit)],
            "repetition": repetition,
        }
