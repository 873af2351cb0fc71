"""TIMIT: `TRAIN|TEST/DRn/[FM]III0/SX123.WAV` (NIST SPHERE) with `.TXT` beside it.

The speaker folder's first letter is the gender and the `DRn` folder the
dialect region (Garofolo et al., LDC93S1). `.TXT` holds `start end text`.
Copies converted to RIFF as `SX123.WAV.wav` next to the original are skipped
so that every utterance is read once.
"""

from __future__ import annotations

import re

from anoncli.corpus.layouts.base import FilenameLayout, LayoutResult, Scan


class TIMIT(FilenameLayout):
    """TIMIT (LDC93S1): region, gender and speaker from the folders, the transcript from the .TXT beside the audio."""

    name = "timit"
    title = "TIMIT (DRn/[FM]xxxn/SX123.WAV)"
    columns = ("speaker", "gender", "dialect_region", "split", "text_id", "transcript")
    pattern = re.compile(r"(?:^|/)(DR[1-8])/([FM])([A-Z]{3}\d)/([A-Z]{2}\d+)\.WAV(?:\.wav)?$", re.IGNORECASE)

    def load(self, scan: Scan, **options) -> LayoutResult:
        present = set(scan.audio)
        converted = [r for r in scan.audio if r.lower().endswith(".wav.wav") and r[:-4] in present]
        if not converted:
            return super().load(scan, **options)
        skip = set(converted)
        result = super().load(Scan(scan.root, [r for r in scan.audio if r not in skip], scan.stats), **options)
        result.notes.append(f"{len(converted)} converted copies (*.WAV.wav) skipped: the NIST original is read")
        return result

    def context(self, scan):
        return {"root": scan.root}

    def utt_id_for(self, match, rel_path):
        _, gender, initials, text_id = match.groups()
        return f"{gender}{initials}_{text_id}".upper()

    def labels_for(self, match, context):
        region, gender, initials, text_id = match.groups()
        rel = match.string
        transcript = None
        stem = context["root"] / rel[: match.end(4)]
        for suffix in (".TXT", ".txt"):
            try:
                words = stem.with_name(stem.name + suffix).read_text(encoding="utf-8", errors="replace").split()
            except OSError:
                continue
            transcript = " ".join(words[2:]) if len(words) > 2 and words[0].isdigit() else " ".join(words)
            break
        parts = [p.lower() for p in rel.split("/")]
        split = "train" if "train" in parts else "test" if "test" in parts else None
        return {
            "speaker": f"{gender}{initials}".upper(),
            "gender": "female" if gender.upper() == "F" else "male",
            "dialect_region": region.upper(),
            "split": split,
            "text_id": text_id.upper(),
            "transcript": transcript,
        }
