"""CSTR VCTK: `wav48/pNNN/pNNN_UUU.wav` (0.80) or
`wav48_silence_trimmed/pNNN/pNNN_UUU_micM.flac` (0.92), transcripts in
`txt/pNNN/pNNN_UUU.txt`, speakers in `speaker-info.txt`
(`ID AGE GENDER ACCENTS REGION [COMMENTS]`, IDs with or without the `p`).
"""

from __future__ import annotations

import re
from pathlib import Path

from anoncli.corpus.labels import normalise_gender
from anoncli.corpus.layouts.base import FilenameLayout
from anoncli.errors import InputError

INFO = "speaker-info.txt"


def read_speaker_info(path: Path) -> dict[str, dict[str, str | None]]:
    """VCTK's speaker-info.txt as {"pNNN": age, gender, accent, region}; the header line is skipped.

    Raises InputError (exit 2) naming the file when it cannot be read.
    """
    speakers: dict[str, dict[str, str | None]] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) < 3 or fields[0].upper() == "ID":
                    continue
                speaker = fields[0] if not fields[0].isdigit() else f"p{fields[0]}"
                region = " ".join(fields[4:]).split("(")[0].strip() if len(fields) > 4 else ""
                speakers[speaker] = {
                    "age": fields[1],
                    "gender": normalise_gender(fields[2]),
                    "accent": fields[3] if len(fields) > 3 else None,
                    "region": region or None,
                }
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None
    return speakers


class VCTK(FilenameLayout):
    """CSTR VCTK 0.80 and 0.92: speaker, utterance and microphone from the name; speaker info and txt/ transcripts beside it."""

    name = "vctk"
    title = "VCTK (pNNN/pNNN_UUU[_micM].wav|flac)"
    columns = ("speaker", "gender", "age", "accent", "region", "transcript", "mic")
    pattern = re.compile(r"(?:^|/)([ps]\d+)/\1_(\d{3})(?:_(mic[12]))?\.(?:wav|flac)$")

    def context(self, scan):
        context: dict = {"speakers": {}, "_notes": []}
        path = scan.side_file(INFO)
        if path is None and (scan.root.parent / INFO).is_file():
            path = scan.root.parent / INFO
        if path is None:
            context["_notes"].append(f"no {INFO} found: gender, age and accent are left empty")
        else:
            context["speakers"] = read_speaker_info(path)
            context["source"] = path
        txt_dirs = [d for d in (scan.root / "txt", scan.root.parent / "txt") if d.is_dir()]
        context["txt"] = txt_dirs[0] if txt_dirs else None
        if context["txt"] is None:
            context["_notes"].append("no txt/ folder found: transcripts are left empty")
        return context

    def source_note(self, context):
        return str(context["source"]) if context.get("source") else None

    def utt_id_for(self, match, rel_path):
        speaker, number, mic = match.groups()
        return f"{speaker}_{number}" + (f"_{mic}" if mic else "")

    def labels_for(self, match, context):
        speaker, number, mic = match.groups()
        transcript = None
        if context["txt"] is not None:
            try:
                transcript = (
                    (context["txt"] / speaker / f"{speaker}_{number}.txt")
                    .read_text(encoding="utf-8", errors="replace")
                    .strip()
                )
            except OSError:
                pass
        info = context["speakers"].get(speaker, {})
        return {
            "speaker": speaker,
            **{k: info.get(k) for k in ("gender", "age", "accent", "region")},
            "transcript": transcript,
            "mic": mic,
        }
