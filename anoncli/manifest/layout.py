"""Where manifest files live inside an output folder."""

from __future__ import annotations

import re
from pathlib import Path

MANIFEST_DIR = "manifest"
PENDING_DIR = ".pending"
PART_RE = re.compile(r"^part-(\d{5})-of-(\d{5})\.parquet$")
SELECTION_FILE = "selection.txt"  # the utterance ids a --files-from run was asked for, one per line


def manifest_dir(out: Path) -> Path:
    """The manifest folder of an output folder: `out/manifest`."""
    return Path(out) / MANIFEST_DIR


def part_name(index: int, count: int) -> str:
    """File name of manifest part `index` of `count`: `part-00000-of-00004.parquet`."""
    return f"part-{index:05d}-of-{count:05d}.parquet"


def part_path(out: Path, index: int, count: int) -> Path:
    """Path of manifest part `index` of `count` inside `out`."""
    return manifest_dir(out) / part_name(index, count)


def pending_dir(out: Path, index: int, count: int) -> Path:
    """Batch files of a shard that is running (or was killed) before they are merged into its part."""
    return manifest_dir(out) / PENDING_DIR / f"part-{index:05d}-of-{count:05d}"


def part_files(out: Path) -> list[Path]:
    """Finished manifest parts of `out`, sorted; empty when there is no manifest folder."""
    folder = manifest_dir(out)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if PART_RE.match(p.name))


def pending_files(out: Path) -> list[Path]:
    """Batch files of running or killed shards (`manifest/.pending/*/*.parquet`, hidden files excluded), sorted."""
    root = manifest_dir(out) / PENDING_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("*/*.parquet") if not p.name.startswith("."))


def selection_path(out: Path) -> Path:
    """`out/manifest/selection.txt`: the utterance ids the latest `--files-from` run selected (see `read_selection`)."""
    return manifest_dir(out) / SELECTION_FILE


def read_selection(out: Path) -> list[str] | None:
    """The utterance ids recorded by the latest `--files-from` run into `out`, or None when there is no record."""
    path = selection_path(out)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return [line for line in text.splitlines() if line]
