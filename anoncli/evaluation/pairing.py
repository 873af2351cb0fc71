"""Pairing every anonymized file with its original utterance and labels.

Two kinds of ANONYMIZED folders are understood:
* an anoncli output folder: its manifest names the source (relative to the
  original corpus root) and the output (relative to the folder) of every
  utterance; only rows with status "ok" are evaluated;
* any other folder that mirrors the original's relative paths: files are
  paired by relative path with the suffix ignored (a.flac pairs with a.wav).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from anoncli.corpus import Corpus, Utterance
from anoncli.errors import InputError

FEATURE_SUFFIXES = (".npy",)


@dataclass
class Pairing:
    """Original utterances paired with their anonymized files, how they were paired, and notes on what was left out."""

    pairs: list[tuple[Utterance, Path]]  # (original utterance, anonymized audio file)
    source: str  # "manifest" or "relative-paths"
    feature_outputs: bool = False  # the method wrote feature vectors, not audio
    manifest_table: object | None = None  # pyarrow.Table when source == "manifest"
    methods: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unpaired: int = 0  # original utterances with no anonymized output in the folder


def has_manifest(folder: Path) -> bool:
    """Whether `folder` holds an anoncli manifest folder."""
    return (Path(folder) / "manifest").is_dir()


def _stem_key(rel_path: str) -> str:
    return str(PurePosixPath(rel_path).with_suffix(""))


def pair_by_manifest(corpus: Corpus, anonymized: Path) -> Pairing:
    """Pairs from the manifest's ok rows, matched on source path; failed, unmatched and missing rows are counted in notes.

    Raises InputError when the manifest is unreadable or lacks source_path, output_path or status.
    """
    from anoncli.manifest.reader import read_manifest

    table = read_manifest(anonymized)
    columns = set(table.column_names)
    for needed in ("source_path", "output_path", "status"):
        if needed not in columns:
            raise InputError(f"{anonymized}: manifest has no {needed!r} column")
    rows = table.select(
        [c for c in ("utt_id", "source_path", "output_path", "features_path", "status", "method") if c in columns]
    ).to_pylist()
    # Manifests record where each input was read (a Kaldi wav.scp file, not the output name).
    by_rel = {**{u.rel_path: u for u in corpus.utterances}, **{u.source_path: u for u in corpus.utterances}}
    pairs, notes, methods = [], [], set()
    covered: set[str] = set()  # original utterances with an ok row whose output exists (audio or features)
    failed = missing_source = missing_output = 0
    feature_outputs = False
    for row in rows:
        if row["status"] != "ok":
            failed += 1
            continue
        utt = by_rel.get(row["source_path"])
        if utt is None:
            missing_source += 1
            continue
        out_rel = row.get("output_path") or ""
        if row.get("features_path") or out_rel.endswith(FEATURE_SUFFIXES):
            feature_outputs = True
        if out_rel.endswith(FEATURE_SUFFIXES) or (not out_rel and row.get("features_path")):
            covered.add(utt.utt_id)
            methods.add(row.get("method") or "?")
            continue  # feature vectors are evaluated by feature_probes, not decoded as audio
        target = anonymized / out_rel
        if not target.is_file():
            missing_output += 1
            continue
        methods.add(row.get("method") or "?")
        pairs.append((utt, target))
        covered.add(utt.utt_id)
    if failed:
        notes.append(f"{failed} manifest rows have status 'failed' and are not evaluated")
    if missing_source:
        notes.append(
            f"{missing_source} manifest rows name a source file that is not among the files evaluated from {corpus.root}"
        )
    if missing_output:
        notes.append(f"{missing_output} manifest rows name an output file that does not exist")
    unpaired = sum(u.utt_id not in covered for u in corpus.utterances)
    if unpaired:
        notes.append(
            f"{unpaired} of {len(corpus.utterances)} original files have no anonymized output in {anonymized} "
            "(not done yet, failed or missing): the figures cover the others only"
        )
    pairs.sort(key=lambda p: p[0].utt_id)
    return Pairing(pairs, "manifest", feature_outputs, table, sorted(methods), notes, unpaired)


def pair_by_relative_path(corpus: Corpus, anonymized: Path) -> Pairing:
    """Pairs by relative path without extension: OUT mirrors the corpus."""
    from anoncli.corpus.walk import iter_audio_files

    found: dict[str, str] = {}
    for rel in iter_audio_files(anonymized):
        found.setdefault(_stem_key(rel), rel)
    pairs = [
        (u, anonymized / found[_stem_key(u.rel_path)]) for u in corpus.utterances if _stem_key(u.rel_path) in found
    ]
    notes = []
    missing = len(corpus.utterances) - len(pairs)
    if missing:
        notes.append(f"{missing} original utterances have no anonymized counterpart in {anonymized}")
    return Pairing(pairs, "relative-paths", False, None, [], notes, missing)


def pair_corpus(corpus: Corpus, anonymized: str | Path) -> Pairing:
    """Pair the corpus with an anonymized folder, by its manifest when it has one, else by relative paths.

    Raises InputError when the folder is missing or yields no pairs (and no feature outputs).
    """
    anonymized = Path(anonymized)
    if not anonymized.is_dir():
        raise InputError(f"{anonymized}: no such folder")
    pairing = (
        pair_by_manifest(corpus, anonymized) if has_manifest(anonymized) else pair_by_relative_path(corpus, anonymized)
    )
    table = pairing.manifest_table
    if (
        not pairing.pairs
        and not pairing.feature_outputs
        and table is not None
        and table.num_rows
        and table.column("source_path").null_count == table.num_rows
    ):
        raise InputError(
            f"{anonymized}: a pseudonymized run (its manifest names no source files), which cannot be "
            "paired with the originals; evaluate a run made without --pseudonymize, then release it "
            "with `anoncli export --pseudonymize`"
        )
    if not pairing.pairs and not pairing.feature_outputs:
        raise InputError(
            f"{anonymized}: no file pairs with an utterance of {corpus.root} (paths must mirror the original corpus)"
        )
    return pairing
