"""LibriSpeech (`SPK/CHAP/SPK-CHAP-NNNN.flac` + `SPK-CHAP.trans.txt`) and
LibriTTS (`SPK/CHAP/SPK_CHAP_PPPPPP_SSSSSS.wav` + `.normalized.txt`).

Gender comes from SPEAKERS.TXT (LibriSpeech: `ID | SEX | SUBSET | MINUTES |
NAME`; LibriTTS: the same file or speakers.tsv), looked for in the corpus
folder, one folder down, and the parent (a user may point at one subset
folder). The reader's NAME column is never read: it identifies the person.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from anoncli.corpus.labels import normalise_gender
from anoncli.corpus.layouts.base import FilenameLayout, Scan

SUBSET = re.compile(r"^(?:train|dev|test)-(?:clean|other)(?:-\d+)?$")


def read_speakers_txt(path: Path) -> dict[str, dict[str, str | None]]:
    """`ID | SEX | SUBSET | MINUTES | NAME` with `;` comment lines -> speaker: {gender, subset}."""
    speakers: dict[str, dict[str, str | None]] = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith(";") or "|" not in line:
                continue
            fields = [f.strip() for f in line.split("|")]
            if fields[0].isdigit():
                speakers[fields[0]] = {"gender": normalise_gender(fields[1]), "subset": fields[2] or None}
    return speakers


def read_speakers_tsv(path: Path) -> dict[str, dict[str, str | None]]:
    """LibriTTS speakers.tsv: `READER  GENDER  SUBSET  NAME` (tab separated)."""
    speakers: dict[str, dict[str, str | None]] = {}
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            if len(row) >= 3 and row[0].strip().isdigit():
                speakers[row[0].strip()] = {"gender": normalise_gender(row[1]), "subset": row[2].strip() or None}
    return speakers


def find_speaker_table(scan: Scan) -> Path | None:
    """SPEAKERS.TXT or speakers.tsv in the corpus (root or one folder down) or its parent; None if absent."""
    found = scan.side_file("SPEAKERS.TXT", "speakers.tsv")
    if found is not None:
        return found
    for name in ("SPEAKERS.TXT", "SPEAKERS.txt", "speakers.tsv"):
        candidate = scan.root.parent / name
        if candidate.is_file():
            return candidate
    return None


def load_speaker_table(scan: Scan) -> dict:
    """The speaker table as a layout context: {"speakers": {id: gender, subset}, "source": path}, or a note when absent."""
    path = find_speaker_table(scan)
    if path is None:
        return {"speakers": {}, "_notes": ["no SPEAKERS.TXT found: gender is left empty"]}
    reader = read_speakers_tsv if path.suffix.lower() == ".tsv" else read_speakers_txt
    return {"speakers": reader(path), "source": path}


def _subset_of(rel_path: str) -> str | None:
    parts = rel_path.split("/")
    for part in reversed(parts[:-3]):
        if SUBSET.match(part):
            return part
    return None


class _LibriLayout(FilenameLayout):
    """LibriSpeech and LibriTTS share the SPK/CHAP folders and the SPEAKERS.TXT speaker table."""

    columns = ("speaker", "gender", "chapter", "subset", "transcript")

    def context(self, scan):
        context = load_speaker_table(scan)
        context["root"] = scan.root
        return context

    def source_note(self, context):
        return str(context["source"]) if context.get("source") else None


class LibriSpeech(_LibriLayout):
    """LibriSpeech (Panayotov et al., 2015): speaker and chapter from the path, transcripts from each chapter's trans.txt."""

    name = "librispeech"
    title = "LibriSpeech (SPK/CHAP/SPK-CHAP-NNNN.flac)"
    pattern = re.compile(r"(?:^|/)(\d+)/(\d+)/\1-\2-(\d+)\.(?:flac|wav)$", re.IGNORECASE)

    def context(self, scan):
        context = super().context(scan)
        context["chapters"] = {}  # chapter folder -> {utt id: transcript}, read once per chapter
        return context

    def _transcripts(self, context, folder: str, speaker: str, chapter: str) -> dict[str, str]:
        cache = context["chapters"]
        if folder not in cache:
            lines: dict[str, str] = {}
            path = context["root"] / folder / f"{speaker}-{chapter}.trans.txt"
            try:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    for line in handle:
                        utt, _, text = line.strip().partition(" ")
                        if utt:
                            lines[utt] = text.strip()
            except OSError:
                pass
            cache.clear()  # the sorted walk visits one chapter after the other: keep memory flat
            cache[folder] = lines
        return cache[folder]

    def labels_for(self, match, context):
        speaker, chapter, _ = match.groups()
        rel = match.string
        folder = rel.rsplit("/", 1)[0]  # the chapter folder holds the audio and its trans.txt
        utt = f"{speaker}-{chapter}-{match.group(3)}"
        info = context["speakers"].get(speaker, {})
        return {
            "speaker": speaker,
            "gender": info.get("gender"),
            "chapter": chapter,
            "subset": _subset_of(rel) or info.get("subset"),
            "transcript": self._transcripts(context, folder, speaker, chapter).get(utt),
        }


class LibriTTS(_LibriLayout):
    """LibriTTS (Zen et al., 2019): speaker and chapter from the path, the transcript from the .normalized.txt beside the audio."""

    name = "libritts"
    title = "LibriTTS (SPK/CHAP/SPK_CHAP_P_S.wav)"
    pattern = re.compile(r"(?:^|/)(\d+)/(\d+)/\1_\2_(\d+)_(\d+)\.wav$", re.IGNORECASE)

    def labels_for(self, match, context):
        speaker, chapter = match.group(1), match.group(2)
        rel = match.string
        stem = context["root"] / rel[: -len(".wav")]
        transcript = None
        for kind in (".normalized.txt", ".original.txt"):
            try:
                transcript = Path(f"{stem}{kind}").read_text(encoding="utf-8", errors="replace").strip()
                break
            except OSError:
                continue
        info = context["speakers"].get(speaker, {})
        return {
            "speaker": speaker,
            "gender": info.get("gender"),
            "chapter": chapter,
            "subset": _subset_of(rel) or info.get("subset"),
            "transcript": transcript,
        }
