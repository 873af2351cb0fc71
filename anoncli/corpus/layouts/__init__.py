"""Known corpus layouts: one module per corpus, one registry, one detector.

`detect_layout(scan)` picks the layout whose file naming covers the corpus;
a layout coded in file names beats a generic metadata table (whose labels are
then merged on top), and a folder nothing recognises falls back to "plain".
"""

from __future__ import annotations

from anoncli.corpus.layouts.audiofolder import AudioFolder, Plain
from anoncli.corpus.layouts.audiomnist import AudioMNIST
from anoncli.corpus.layouts.base import ACCEPT_SHARE, Detection, Layout, LayoutResult, Scan
from anoncli.corpus.layouts.cremad import CremaD
from anoncli.corpus.layouts.emodb import EmoDB
from anoncli.corpus.layouts.fsdd import FSDD
from anoncli.corpus.layouts.kaldi import Kaldi
from anoncli.corpus.layouts.librispeech import LibriSpeech, LibriTTS
from anoncli.corpus.layouts.ravdess import RAVDESS
from anoncli.corpus.layouts.timit import TIMIT
from anoncli.corpus.layouts.vctk import VCTK
from anoncli.errors import InputError

# Name -> layout; a new corpus needs one module and one line here.
LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Kaldi(),
        LibriSpeech(),
        LibriTTS(),
        VCTK(),
        RAVDESS(),
        CremaD(),
        EmoDB(),
        TIMIT(),
        AudioMNIST(),
        FSDD(),
        AudioFolder(),
        Plain(),
    )
}
# Layouts recognised from their file names (checked on a sample of the walk).
NAMED = [name for name in LAYOUTS if name not in ("kaldi", "audiofolder", "plain")]
# A best partial match above this share (but below ACCEPT_SHARE) is too close to ignore: the
# folder is read as plain audio with a warning that names the match and its --layout.
AMBIGUOUS_SHARE = 0.5

__all__ = ["LAYOUTS", "NAMED", "Detection", "Layout", "LayoutResult", "Scan", "detect_layout", "get_layout"]


def get_layout(name: str) -> Layout:
    """The layout registered as `name`; raises InputError (exit 2) for an unknown name."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise InputError(f"--layout {name!r}: unknown layout (known: auto, {', '.join(LAYOUTS)})") from None


def detect_named(scan: Scan) -> tuple[Detection | None, list[Detection]]:
    """The filename layout that parses at least ACCEPT_SHARE of the sample, and all partial matches."""
    found = [d for d in (LAYOUTS[name].detect(scan) for name in NAMED) if d is not None]
    found.sort(key=lambda d: -d.share)
    accepted = [d for d in found if d.share >= ACCEPT_SHARE]
    if len(accepted) > 1 and accepted[0].share == accepted[1].share:
        names = " and ".join(d.layout for d in accepted[:2])
        raise InputError(f"{scan.root}: ambiguous layout: the file names fit both {names}; pass --layout NAME")
    return (accepted[0] if accepted else None), found


def describe_tried(found: list[Detection]) -> str:
    """One line for an error message: the layouts tried and the best three partial matches with their shares."""
    tried = ", ".join(["kaldi"] + NAMED + ["audiofolder"])
    if not found:
        return f"tried {tried}"
    best = ", ".join(f"{d.layout} {d.share:.0%}" for d in found[:3])
    return f"tried {tried}; best partial matches: {best}"
