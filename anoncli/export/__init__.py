"""Export an anonymized output folder to the formats other tools read.

`kaldi`: a Kaldi data directory (what the VoicePrivacy Challenge scripts
read); `audiofolder`: audio + metadata.jsonl (Hugging Face `datasets`). The
export is built in a hidden sibling folder and renamed into place, so a
killed export leaves no half-written DIR.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from anoncli.errors import InputError
from anoncli.export.audiofolder import place_file, write_audiofolder
from anoncli.export.kaldi import kaldi_id, read_kaldi, write_kaldi
from anoncli.export.source import read_output_rows

FORMATS = ("kaldi", "audiofolder")

__all__ = ["FORMATS", "ExportSummary", "export_output", "read_kaldi"]


@dataclass
class ExportSummary:
    """What an export wrote: destination, format, counts, label columns kept and dropped, mapping file and notes.

    `speakers` counts the speakers written: for Kaldi the spk2utt lines (an
    unlabelled utterance is its own speaker), for an audiofolder the distinct
    labelled speakers.
    """

    dest: Path
    fmt: str
    utterances: int
    speakers: int
    skipped: int
    columns: list[str]
    dropped_columns: list[str] = field(default_factory=list)
    mapping: Path | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The summary as JSON-ready values (what `export --json` prints)."""
        return {
            "dest": str(self.dest),
            "format": self.fmt,
            "utterances": self.utterances,
            "speakers": self.speakers,
            "skipped_not_ok": self.skipped,
            "label_columns": self.columns,
            "dropped_columns": self.dropped_columns,
            "mapping": str(self.mapping) if self.mapping else None,
            "notes": self.notes,
        }


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or path.is_relative_to(folder)


def _check_paths(out: Path, dest: Path, mapping: Path | None, pseudonymize: bool, overwrite: bool) -> None:
    if not out.is_dir():
        raise InputError(f"{out}: no such output folder")
    if _inside(dest, out) or _inside(out, dest):
        raise InputError(f"{dest}: the export folder must lie outside the output folder {out} (and not contain it)")
    if dest.exists() and not dest.is_dir():
        raise InputError(f"{dest}: exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not overwrite:
        raise InputError(f"{dest}: folder is not empty (pass --overwrite to replace it)")
    if pseudonymize:
        if mapping is None:
            raise InputError("--pseudonymize needs --mapping FILE (outside the export folder) to keep the original ids")
        if _inside(mapping, dest) or _inside(mapping, out):
            raise InputError(f"{mapping}: the mapping must not be written inside the export or the output folder")
        if mapping.exists() and not overwrite:
            raise InputError(f"{mapping}: exists (pass --overwrite to replace it; its .key keeps pseudonyms stable)")
    elif mapping is not None:
        raise InputError("--mapping is only used with --pseudonymize")


def _swap_into_place(staging: Path, dest: Path) -> None:
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.anoncli-old-{os.getpid()}")
        os.replace(dest, old)
    os.replace(staging, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_output(
    out: str | Path,
    fmt: str,
    dest: str | Path,
    *,
    pseudonymize: bool = False,
    mapping: str | Path | None = None,
    overwrite: bool = False,
    link: bool = True,
) -> ExportSummary:
    """Export the finished utterances of output folder `out` to `dest` as `fmt`."""
    out, dest = Path(out), Path(dest).absolute()
    mapping = Path(mapping).absolute() if mapping else None
    if fmt not in FORMATS:
        raise InputError(f"--to {fmt!r}: unknown export format (known: {', '.join(FORMATS)})")
    _check_paths(out, dest, mapping, pseudonymize, overwrite)
    rows, columns, skipped = read_output_rows(out)
    dropped: list[str] = []
    if pseudonymize:
        from anoncli.export.pseudonymize import pseudonymize_rows

        rows, columns, dropped = pseudonymize_rows(rows, columns, mapping)

    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.with_name(f".{dest.name}.anoncli-tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    rows_out = []
    try:
        if fmt == "kaldi":
            # wav.scp holds plain paths: a path with white space cannot be written, and with
            # --pseudonymize it must not name the original ids; such files are linked into wav/.
            notes = []
            localised = []
            for row in rows:
                if pseudonymize or re.search(r"\s", str(row.audio)):
                    safe = kaldi_id(row.utt_id)
                    name = f"wav/{safe}{PurePosixPath(row.output_path).suffix or '.wav'}"
                    place_file(row.audio, staging / name, link)
                    row = replace(row, audio=dest / name)
                    localised.append(name)
                rows_out.append(row)
            if len(set(localised)) != len(localised):
                raise InputError(f"{out}: two utterance ids give the same file name under {dest / 'wav'}")
            if localised:
                notes.append(
                    f"{len(localised)} audio file(s) linked into wav/ (pseudonymous names or white space in the path)"
                )
            if any(PurePosixPath(r.output_path).suffix.lower() != ".wav" for r in rows):
                notes.append("wav.scp lists non-WAV files: Kaldi binaries read only WAV (anonymize with --format wav)")
            rows = rows_out
            speakers, written_notes = write_kaldi(rows, staging)
            notes += written_notes
        else:
            notes = write_audiofolder(rows, columns, staging, pseudonymize, link)
            speakers = len({r.speaker for r in rows if r.speaker})
        _swap_into_place(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if skipped:
        notes.append(f"{skipped} manifest row(s) not exported (status not ok)")
    return ExportSummary(
        dest=dest,
        fmt=fmt,
        utterances=len(rows),
        speakers=speakers,
        skipped=skipped,
        columns=columns,
        dropped_columns=dropped,
        mapping=mapping if pseudonymize else None,
        notes=notes,
    )
