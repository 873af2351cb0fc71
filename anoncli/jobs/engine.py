"""The anonymize job: plan (shard, resume), run batches (in-process or joblib workers), merge the manifest."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from anoncli import __version__
from anoncli.atomic import atomic_write_json, atomic_write_text, is_temp_path
from anoncli.audio import output_intact
from anoncli.corpus import Corpus, open_corpus
from anoncli.corpus.reading import SourceStamp, input_changed
from anoncli.corpus.utterance import Utterance
from anoncli.corpus.walk import AUDIO_EXTENSIONS, fs_name
from anoncli.errors import EXIT_OK, EXIT_PARTIAL, AnoncliError, InputError, environment_failure
from anoncli.jobs.batching import auto_plan, estimate_total_seconds, fixed_batches, make_batches
from anoncli.jobs.pseudonyms import Pseudonymizer, load_or_create_key, write_mapping
from anoncli.jobs.sharding import select_shard
from anoncli.jobs.worker import BatchResult, JobSpec, process_batch
from anoncli.manifest.layout import selection_path
from anoncli.manifest.reader import STAMP_COLUMNS, first_rows, manifest_config, manifest_files, status_by_utt
from anoncli.manifest.schema import STATUS_FAILED, manifest_schema
from anoncli.manifest.writer import PartMerger, records_table, remove_rows, write_batch_table
from anoncli.methods import MethodOptions, create_method, method_class, method_names
from anoncli.progress import write as progress_line

RUN_JSON = "run.json"
# Settings that change what a method writes; a rerun into the same folder must not mix them.
_RESULT_KEYS = (
    "method",
    "seed",
    "per_speaker",
    "checkpoint",
    "vocoder",
    "params",
    "fmt",
    "output_sample_rate",
    "pseudonymize",
    "channel",
)
# Lines of failures and warnings a summary prints before pointing at the manifest.
SHOWN_LINES = 20


@dataclass
class AnonymizeConfig:
    """Everything an `anonymize` run needs: corpus and output folders, method and its settings, batching, shard and output options."""

    corpus: Path
    out: Path
    method: str = "mcadams"
    labels_file: Path | None = None
    labels_sep: str | None = None  # CSV separator of the labels table; None sniffs it
    layout: str = "auto"
    allow_commands: bool = False
    seed: int = 0
    per_speaker: bool = False
    checkpoint: str | None = None
    vocoder: str | None = None
    params: dict[str, str] = field(
        default_factory=dict
    )  # the method's own settings (--param, --alpha), see Method.options_class
    device: str = "cpu"
    jobs: int = 1
    batch_size: int | None = None  # utterances per batch; None: sized from the total duration (auto_plan)
    max_batch_seconds: float | None = None  # duration-bucketed batches capped in seconds (instead of a count)
    backend: str = "local"  # local | dask
    scheduler: str | None = None  # dask scheduler address; None starts a local cluster
    shard: tuple[int, int] = (0, 1)
    overwrite: bool = False
    retry_failed: bool = False
    output_sample_rate: int | None = None
    fmt: str = "wav"
    pseudonymize: bool = False
    mapping: Path | None = None
    channel: int | None = None  # 1-based channel of multichannel files instead of the mono mixdown
    score: bool = True  # per-utterance privacy and utility scores (anoncli.jobs.scores)
    files_from: str | None = None  # the --files-from list's name ("-": stdin) when the corpus was narrowed by one
    dry_run: bool = False
    progress: bool = True

    def method_options(self) -> MethodOptions:
        """The generic `MethodOptions` (device, seed, per-speaker, checkpoint, vocoder, method params) for `create_method`."""
        return MethodOptions(
            device=self.device,
            seed=self.seed,
            per_speaker=self.per_speaker,
            checkpoint=self.checkpoint,
            vocoder=self.vocoder,
            extra=dict(self.params),
        )

    def result_settings(self) -> dict[str, Any]:
        """The settings that change what is written; a rerun into the same --out must match them."""
        values = asdict(self)
        settings = {key: values[key] for key in _RESULT_KEYS}
        if self.pseudonymize and self.mapping is not None:  # another key would release every file twice
            from anoncli.jobs.pseudonyms import key_id

            settings["pseudonym_key"] = key_id(self.mapping)
        return settings


@dataclass
class Plan:
    """What a run will do for its shard: the corpus, the shard's utterances, those to process, and counts of those skipped or redone."""

    corpus: Corpus
    shard_utterances: list[Utterance]
    todo: list[Utterance]
    skipped_done: int
    redo: int
    skipped_failed: int = 0  # of skipped_done: rows an earlier run recorded as failed
    changed: list[str] = field(default_factory=list)  # of redo: inputs whose bytes changed since their row was written
    lost: list[str] = field(default_factory=list)  # of redo: done rows whose output file is no longer in OUT

    def as_dict(self, config: AnonymizeConfig) -> dict[str, Any]:
        """The plan as JSON-ready counts (what --dry-run prints)."""
        return {
            "corpus": str(config.corpus),
            "out": str(config.out),
            "method": config.method,
            "shard": f"{config.shard[0]}/{config.shard[1]}",
            "corpus_files": len(self.corpus),
            "shard_files": len(self.shard_utterances),
            "to_process": len(self.todo),
            "already_done": self.skipped_done,
            "already_failed": self.skipped_failed,
            "to_redo": self.redo,
            "changed_inputs": len(self.changed),
            "lost_outputs": len(self.lost),
            "ignored_non_audio_files": self.corpus.ignored_files,
        }


@dataclass
class RunSummary:
    """What a run did, and what the output folder holds for its shard afterwards.

    `failed` counts this run's failures; `failed_in_folder` counts every
    failed row of the shard's utterances in OUT after the run, including
    those of earlier runs that this one skipped (`skipped_failed`, redone
    only with --retry-failed). The exit code follows the folder.
    """

    processed: int
    ok: int
    failed: int
    skipped: int
    audio_s: float
    wall_s: float
    errors: list[str]
    skipped_failed: int = 0
    failed_in_folder: int = 0
    warnings: list[str] = field(default_factory=list)
    scores: dict[str, Any] = field(default_factory=dict)  # run.json "scores": attackers, notes, distributions

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio processed per second of wall time (0.0 for no time)."""
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """0 when every file of the shard is done in OUT; 3 while failed rows remain there."""
        return EXIT_PARTIAL if self.failed or self.failed_in_folder else EXIT_OK

    def report_lines(self, out: Path) -> list[str]:
        """The summary printed on stderr: counts, warnings, this run's failures, and what is left in OUT."""
        earlier = f" ({self.skipped_failed} of them failed before)" if self.skipped_failed else ""
        lines = [
            f"anonymize: {self.ok} ok, {self.failed} failed, {self.skipped} already done{earlier}; "
            f"{self.audio_s / 3600:.3f} h of audio in {self.wall_s:.1f} s "
            f"({self.realtime_factor:.0f}x real time) -> {out}"
        ]
        lines += [f"  warning: {line}" for line in self.warnings[:SHOWN_LINES]]
        if len(self.warnings) > SHOWN_LINES:
            lines.append(f"  ... and {len(self.warnings) - SHOWN_LINES} more warnings (the manifest's note column)")
        lines += [f"  failed: {line}" for line in self.errors[:SHOWN_LINES]]
        if len(self.errors) > SHOWN_LINES:
            lines.append(f"  ... and {len(self.errors) - SHOWN_LINES} more (see anoncli inspect {out})")
        remaining = max(self.failed_in_folder, self.failed)
        if remaining:
            from_before = remaining - self.failed
            detail = f" ({from_before} from earlier runs)" if from_before > 0 else ""
            lines.append(
                f"anonymize: {out} holds {remaining} failed file(s){detail}; fix the inputs and rerun with "
                f"--retry-failed to redo them (anoncli inspect {out} lists the reasons)"
            )
        return lines


def check_paths(config: AnonymizeConfig) -> None:
    """Refuse outputs that could overwrite or mix with the input corpus, or leak the mapping."""
    corpus = config.corpus.resolve()
    out = config.out.resolve()
    if out == corpus or out.is_relative_to(corpus):
        raise InputError(f"--out {config.out}: must not be the input corpus or inside it ({config.corpus})")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {config.out}: exists and is not a folder")
    if config.pseudonymize:
        if config.mapping is None:
            raise AnoncliError("--pseudonymize needs --mapping FILE (outside --out) for the id mapping")
        mapping = config.mapping.resolve()
        if mapping.is_relative_to(out) or mapping.is_relative_to(corpus):
            raise InputError(f"--mapping {config.mapping}: must be outside the output and the input folders")
    if config.fmt not in ("wav", "flac"):
        raise AnoncliError(f"--audio-format {config.fmt!r}: expected wav or flac")
    if out.is_dir() and not _is_anoncli_output(out):
        others = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        if others:
            raise InputError(
                f"--out {config.out}: holds other files ({_first_names(others)}) and no anoncli manifest; "
                "choose a new or empty folder"
            )


def _is_anoncli_output(out: Path) -> bool:
    """Whether `out` holds an anoncli run: a manifest folder or a run record."""
    return (out / "manifest").is_dir() or any(out.glob("run*.json"))


def _check_compatible(config: AnonymizeConfig) -> str | None:
    """A resumed run must write what the first run wrote; otherwise the folder would mix two anonymizations.

    The same holds for the corpus: a folder holds one corpus's anonymization.
    Returns the recorded corpus folder when it is another path that no longer
    exists (moved, or another corpus: the caller tells them apart by whether
    any file of this corpus is in OUT), else None.
    """
    stored = manifest_config(config.out)
    if not stored and (config.out / RUN_JSON).is_file():
        stored = json.loads((config.out / RUN_JSON).read_text()).get("config", {})
    before = stored.get("corpus")
    if before and Path(before) != config.corpus.resolve() and Path(before).is_dir():
        raise AnoncliError(
            f"--out {config.out}: holds the anonymization of another corpus ({before}); "
            f"this run reads {config.corpus.resolve()}: use another --out"
        )
    moved_from = before if before and Path(before) != config.corpus.resolve() else None
    previous = stored.get("result_settings")
    _check_settings(config, previous)
    return moved_from


def _check_settings(config: AnonymizeConfig, previous: dict | None) -> None:
    """Refuse settings that would change what is written (see `AnonymizeConfig.result_settings`)."""
    current = json.loads(json.dumps(config.result_settings(), default=str))
    # another key names every file anew: even --overwrite would leave the old pseudonyms' files beside the new
    if previous and previous.get("pseudonym_key") and previous["pseudonym_key"] != current.get("pseudonym_key"):
        raise AnoncliError(
            f"--out {config.out}: was pseudonymized with another key; give the --mapping FILE of "
            "that run (its key is kept beside it), or use another --out"
        )
    if not previous or config.overwrite:
        return
    if previous.get("alpha") is not None:  # a folder written when --alpha was a setting of its own
        previous = {**previous, "params": {**(previous.get("params") or {}), "alpha": str(previous["alpha"])}}
    changed = [key for key in current if key in previous and previous[key] != current[key]]
    if changed:
        details = ", ".join(f"{key}: {previous[key]!r} -> {current[key]!r}" for key in changed)
        raise AnoncliError(
            f"--out {config.out}: holds a run with other settings ({details}); "
            "use another --out, or --overwrite to redo every file"
        )


def plan(config: AnonymizeConfig, corpus: Corpus | None = None) -> Plan:
    """Open the corpus (unless given), select the shard and split it into files to do and files OUT already holds.

    Raises InputError (exit 2) for a corpus that cannot be opened or holds no audio file.
    """
    if corpus is None:  # an empty --files-from selection is an empty corpus, not "no selection"
        corpus = open_corpus(
            config.corpus,
            config.labels_file,
            layout=config.layout,
            allow_commands=config.allow_commands,
            labels_sep=config.labels_sep,
        )
        if not corpus.utterances:
            raise InputError(f"{config.corpus}: no audio files found (looked for: {_audio_extensions()})")
    shard_utts = select_shard(corpus.utterances, *config.shard)
    # each utterance's first row in OUT: its status and the stamp of the input it was made from
    written = (
        first_rows(config.out, ["status", "output_path", "features_path", *STAMP_COLUMNS])
        if config.out.exists()
        else {}
    )
    pseudonyms = _pseudonymizer(config)

    def key(utt: Utterance) -> str:
        """The id the manifest records for `utt` (its pseudonym when pseudonymising)."""
        return pseudonyms.utterance(utt.utt_id) if pseudonyms else utt.utt_id

    todo, skipped, redo, skipped_failed, changed, lost = [], 0, 0, 0, [], []
    for utt in shard_utts:
        state, output, features, *stamp = written.get(key(utt), (None,) * (3 + len(STAMP_COLUMNS)))
        if state is None:
            todo.append(utt)
        elif config.overwrite or (config.retry_failed and state == STATUS_FAILED):
            todo.append(utt)
            redo += 1
        elif None not in stamp and input_changed(utt, SourceStamp(*stamp)):
            todo.append(utt)
            redo += 1
            changed.append(utt.rel_path)
        elif state != STATUS_FAILED and any(
            rel and not output_intact(config.out / fs_name(rel)) for rel in (output, features)
        ):
            todo.append(utt)  # done once, but its output was deleted, moved, cut short or overwritten since
            redo += 1
            lost.append(output or features)
        else:
            skipped += 1
            skipped_failed += state == STATUS_FAILED
    return Plan(corpus, shard_utts, todo, skipped, redo, skipped_failed, changed, lost)


def check_method_options(method: str, checkpoint: str | None, vocoder: str | None) -> None:
    """Refuse a checkpoint or vocoder that `method` would ignore, by what its class declares
    (`Method.uses_checkpoint`, `Method.uses_vocoder`): AnoncliError (exit 2) naming the methods that use it."""
    cls = method_class(method)

    def users(flag: str) -> str:
        names = [name for name in method_names() if getattr(method_class(name), flag)]
        return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)

    if checkpoint is not None and not cls.uses_checkpoint:
        raise AnoncliError(
            f"--checkpoint: the {method} method uses no trained model; "
            f"did you mean --method {users('uses_checkpoint')}?"
        )
    if vocoder is not None and not cls.uses_vocoder:
        raise AnoncliError(
            f"--vocoder: the {method} method uses no vocoder; did you mean --method {users('uses_vocoder')}?"
        )


def _audio_extensions(first: tuple[str, ...] = ("wav", "flac", "mp3", "ogg", "opus", "sph")) -> str:
    """The audio file extensions a corpus walk picks up: the common ones, then how many others."""
    others = len(AUDIO_EXTENSIONS) - len(set(first) & AUDIO_EXTENSIONS)
    return f"{', '.join(e for e in first if e in AUDIO_EXTENSIONS)} and {others} other extensions"


def failed_in_folder(config: AnonymizeConfig, utterances: list[Utterance]) -> int:
    """How many of `utterances` have a failed row in OUT (their latest row, whichever run wrote it)."""
    if not config.out.is_dir():
        return 0
    status = status_by_utt(config.out)
    pseudonyms = _pseudonymizer(config)
    keys = (pseudonyms.utterance(u.utt_id) if pseudonyms else u.utt_id for u in utterances)
    return sum(status.get(key) == STATUS_FAILED for key in keys)


def _pseudonymizer(config: AnonymizeConfig) -> Pseudonymizer | None:
    if not config.pseudonymize:
        return None
    return Pseudonymizer(load_or_create_key(config.mapping))


def _first_names(names: list[str], shown: int = 3) -> str:
    """The first `shown` names, comma-separated, with ", ..." when there are more."""
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


@contextlib.contextmanager
def _shard_lock(config: AnonymizeConfig):
    """Hold `OUT/manifest/.lock-part-I-of-N` for the run: a second job on the same shard of OUT is refused.

    Raises AnoncliError (exit 2) naming the folder and shard when another
    process holds it (an advisory `flock`, released when that process ends,
    however it ends). The lock file is removed while still held when the run
    ends; a job that opened it just before checks, once it holds the lock, that
    the name still leads to the file it locked, and otherwise starts over.
    """
    import fcntl

    index, count = config.shard
    folder = config.out / "manifest"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".lock-part-{index:05d}-of-{count:05d}"
    while True:
        with open(path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AnoncliError(
                    f"--out {config.out}: another anoncli job is writing shard {index}/{count} of it; "
                    "wait for it to end, or use another --out"
                ) from None
            try:
                if not _same_file(path, handle):
                    continue  # removed (or replaced) by the job that held it: lock the file now there
                try:
                    yield
                finally:
                    with contextlib.suppress(OSError):
                        path.unlink()  # while held: no other job can lock this file and then find it gone unseen
                return
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _same_file(path: Path, handle) -> bool:
    """Whether `path` still names the file `handle` has open (same device and inode)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(handle.fileno())
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _remove_stale_temp_files(out: Path) -> None:
    """Unfinished writes of a killed run on this host (their process is gone)."""
    host = socket.gethostname()
    for folder, _dirs, files in os.walk(out):
        for name in files:
            path = Path(folder) / name
            if not is_temp_path(path):
                continue
            owner = name.rsplit("-tmp-", 1)[-1]
            if owner.startswith(host + "-") and not _alive(owner[len(host) + 1 :]):
                path.unlink(missing_ok=True)


def _alive(pid_text: str) -> bool:
    try:
        os.kill(int(pid_text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _versions() -> dict[str, str | None]:
    """Versions of the packages a run uses, from their metadata (a lean run does not import torch to ask it)."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        """The installed version of distribution `name`, or None."""
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    packages = ("torch", "torchaudio", "numpy", "pyarrow", "soundfile", "soxr", "numba")
    return {
        "anoncli": __version__,
        "python": sys.version.split()[0],
        **{name: installed(name) for name in packages},
        "platform": platform.platform(),
    }


def _run_record(config: AnonymizeConfig, started: bool = False) -> Path:
    """OUT/run.json (run-K-of-N.json for a shard), written when the job ends; with `started`, the hidden
    record of the configuration a first run writes when it starts (`.run-started.json`, removed at the end),
    so that `inspect --check` knows the corpus of a job killed before its first batch was written."""
    index, count = config.shard
    name = RUN_JSON if count == 1 else f"run-{index:05d}-of-{count:05d}.json"
    return config.out / (f".{Path(name).stem}-started.json" if started else name)


def _write_run_json(config: AnonymizeConfig, method_config: dict, summary: RunSummary, started: float) -> None:
    record = {
        "config": _config_record(config, method_config),
        "versions": _versions(),
        "timings": {
            "started_unix": started,
            "wall_s": summary.wall_s,
            "audio_s": summary.audio_s,
            "realtime_factor": summary.realtime_factor,
        },
        "counts": {
            "processed": summary.processed,
            "ok": summary.ok,
            "failed": summary.failed,
            "skipped_already_done": summary.skipped,
            "skipped_failed_before": summary.skipped_failed,
            "failed_in_folder": summary.failed_in_folder,
        },
        "scores": summary.scores or {"enabled": False},
    }
    atomic_write_json(_run_record(config), record)
    _run_record(config, started=True).unlink(missing_ok=True)


def _config_record(config: AnonymizeConfig, method_config: dict) -> dict[str, Any]:
    record = {k: v for k, v in asdict(config).items() if k not in ("dry_run", "progress")}
    record["corpus"] = str(config.corpus.resolve())
    record["out"] = str(config.out.resolve())
    record["mapping"] = None  # the mapping's location is the user's secret; never stored in OUT
    record["method_config"] = method_config
    record["result_settings"] = config.result_settings()
    return json.loads(json.dumps(record, default=str))


def run_anonymize(
    config: AnonymizeConfig, job_plan: Plan | None = None, on_batch: Callable[[BatchResult], None] | None = None
) -> RunSummary:
    """Anonymize the shard's remaining utterances; returns counts, timings and what OUT holds afterwards.

    An OS-level failure (disk full, no permission, read-only file system, a
    folder missing on the way) stops the job with EnvironmentFailure (exit
    2), one line naming the path and the cause. The file being written is not
    recorded as failed, so rerunning the same command redoes it.
    """
    try:
        return _run_anonymize(config, job_plan, on_batch)
    except OSError as err:
        raise environment_failure(err, None if err.filename else config.out, action=None) from None


def _run_anonymize(
    config: AnonymizeConfig, job_plan: Plan | None, on_batch: Callable[[BatchResult], None] | None
) -> RunSummary:
    started = time.time()
    check_paths(config)
    moved_from = _check_compatible(config) if config.out.exists() else None
    job_plan = job_plan or plan(config)
    if moved_from and not (job_plan.skipped_done or job_plan.redo) and manifest_files(config.out):
        # the first corpus's folder is gone: a moved corpus shares its files with OUT, another one does not
        raise AnoncliError(
            f"--out {config.out}: holds the anonymization of a corpus that was at {moved_from}, "
            f"and none of its files is in {config.corpus.resolve()}: use another --out"
        )
    check_method_options(config.method, config.checkpoint, config.vocoder)
    method = create_method(config.method, config.method_options())  # fail early on bad options/missing models
    method_config = method.config()
    config.out.mkdir(parents=True, exist_ok=True)
    with _shard_lock(config):
        return _run_locked(config, job_plan, method, method_config, on_batch, started)


def _run_locked(
    config: AnonymizeConfig,
    job_plan: Plan,
    method,
    method_config: dict,
    on_batch: Callable[[BatchResult], None] | None,
    started: float,
) -> RunSummary:
    _remove_stale_temp_files(config.out)
    if config.files_from is not None and not config.pseudonymize:
        # what `inspect --check` measures completeness against (a pseudonymized folder holds no original ids)
        atomic_write_text(selection_path(config.out), "".join(f"{u.utt_id}\n" for u in job_plan.corpus.utterances))

    pseudonyms = _pseudonymizer(config)
    if config.pseudonymize:
        index, count = config.shard
        mapping = (
            config.mapping
            if count == 1
            else config.mapping.with_name(
                f"{config.mapping.stem}-part-{index:05d}-of-{count:05d}{config.mapping.suffix}"
            )
        )
        write_mapping(mapping, job_plan.shard_utterances, pseudonyms)

    redo_ids = [pseudonyms.utterance(u.utt_id) if pseudonyms else u.utt_id for u in job_plan.todo]
    if job_plan.redo:
        remove_rows(config.out, redo_ids)

    options = config.method_options()
    statistics_file = _corpus_statistics(config, job_plan, method) if method.two_pass else None
    if statistics_file is not None:
        options = replace(options, corpus_statistics=str(statistics_file))
    schema = manifest_schema(job_plan.corpus.label_columns, _config_record(config, method_config))
    score_plan = None
    if config.score:
        from anoncli.jobs.scores import plan_scores

        score_plan = plan_scores(job_plan.corpus, job_plan.todo, config.channel, config.device)
    spec = JobSpec(
        out=str(config.out),
        shard=config.shard,
        method=config.method,
        options=options,
        label_columns=job_plan.corpus.label_columns,
        schema=schema,
        fmt=config.fmt,
        output_sample_rate=config.output_sample_rate,
        pseudonym_key=pseudonyms.key if pseudonyms else None,
        score=config.score,
        score_plan=score_plan,
        single_thread=config.device == "cpu",
        channel=config.channel,
    )
    summary = RunSummary(
        processed=0,
        ok=0,
        failed=0,
        skipped=job_plan.skipped_done,
        audio_s=0.0,
        wall_s=0.0,
        errors=[],
        skipped_failed=job_plan.skipped_failed,
    )
    if job_plan.changed:
        summary.warnings.append(
            f"{len(job_plan.changed)} input file(s) changed since they were anonymized "
            f"(size or content), redone: {_first_names(job_plan.changed)}"
        )
    if config.per_speaker:
        unnamed = sum(u.speaker is None for u in job_plan.todo)
        if unnamed:
            summary.warnings.append(
                f"--per-speaker: {unnamed} file(s) have no speaker label, so their draws are "
                "per utterance (give speakers with a labels table or --labels)"
            )
    if job_plan.lost:
        summary.warnings.append(
            f"{len(job_plan.lost)} output file(s) the manifest lists as done were missing "
            f"from {config.out} or damaged, redone: {_first_names(job_plan.lost)}"
        )
    if not _run_record(config).exists():  # a first run: its settings, before anything else is written
        atomic_write_json(_run_record(config, started=True), {"config": _config_record(config, method_config)})
    t0 = time.perf_counter()
    from anoncli.jobs.progress import JobProgress

    batches, jobs = _batches(job_plan.todo, config)
    with (
        PartMerger(config.out, config.shard, schema).open() as merger,
        JobProgress(total=len(job_plan.todo), enabled=config.progress) as progress,
    ):
        for result in _execute(spec, batches, config, jobs):
            rows = result.rows
            if rows and result.pending_file is None:  # a local batch's rows: recorded here, converted once
                rows = records_table(rows, schema)
                result.pending_file = str(write_batch_table(config.out, config.shard, rows))
            merger.add(rows, result.pending_file)  # the merge streams while the workers work
            summary.ok += result.ok
            summary.failed += result.failed
            summary.processed += result.ok + result.failed
            summary.audio_s += result.audio_s
            summary.errors.extend(result.errors)
            summary.warnings.extend(result.warnings)
            progress.advance(result.ok + result.failed, result.audio_s, result.failed)
            if on_batch is not None:
                on_batch(result)
    summary.wall_s = time.perf_counter() - t0
    if statistics_file is not None:
        statistics_file.unlink(missing_ok=True)  # the original voices' statistics: not left in the release
    summary.failed_in_folder = failed_in_folder(config, job_plan.shard_utterances)
    if score_plan is not None:
        from anoncli.jobs.scores import scores_record

        keys = [pseudonyms.utterance(u.utt_id) if pseudonyms else u.utt_id for u in job_plan.shard_utterances]
        summary.scores = scores_record(config.out, score_plan, keys)
    _write_run_json(config, method_config, summary, started)
    return summary


CORPUS_STATISTICS_NAME = ".corpus-statistics.json"


def _corpus_statistics(config: AnonymizeConfig, job_plan: Plan, method) -> Path:
    """The first pass of a two-pass method: its statistics over every file of the corpus (all shards), written
    atomically to the hidden OUT/.corpus-statistics.json (a shard's own file when sharded), reused by a resumed
    run while the corpus's files and the model are the same (a fingerprint of both). They describe the
    original voices, so the file is removed when the job has gone through every file: it is never part of
    what is released."""
    import hashlib

    utterances = job_plan.corpus.utterances
    digest = hashlib.sha256(json.dumps([method.config(), config.seed], sort_keys=True, default=str).encode())
    for utt in utterances:
        digest.update(f"{utt.utt_id}\t{utt.speaker or ''}\t{utt.path}\n".encode())
    fingerprint = digest.hexdigest()[:16]
    index, count = config.shard
    name = CORPUS_STATISTICS_NAME if count == 1 else f".corpus-statistics-{index:05d}-of-{count:05d}.json"
    path = config.out / name
    if path.exists():
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("fingerprint") == fingerprint:
                return path
        except (OSError, ValueError):
            pass  # damaged: computed again
    if config.progress:
        progress_line(f"first pass: {method.name} pools each speaker's statistics over {len(utterances)} files")
    statistics = method.corpus_statistics(utterances, progress=config.progress)
    atomic_write_json(path, {"fingerprint": fingerprint, "method": method.name, "statistics": statistics})
    return path


DEFAULT_BATCH_SIZE = 16  # with --max-batch-seconds, which ignores it


def _batches(todo: list[Utterance], config: AnonymizeConfig) -> tuple[list[list[Utterance]], int]:
    """The batches and the number of workers to run them on.

    As asked (--batch-size N, --max-batch-seconds S, with --jobs), or, by
    default, sized from the total duration of `todo` (`auto_plan`): a job
    of little audio stays in this process, a larger one gets batches of
    about a minute of audio, several per worker.
    """
    if config.batch_size is not None or config.max_batch_seconds is not None:
        return make_batches(todo, config.batch_size or DEFAULT_BATCH_SIZE, config.max_batch_seconds), config.jobs
    workers, size = auto_plan(len(todo), estimate_total_seconds(todo), config.jobs)
    if config.backend != "local" or config.scheduler or config.device.startswith("cuda"):
        workers = config.jobs  # a cluster or a GPU: the workers are there anyway
    return fixed_batches(todo, size), workers


def _execute(spec: JobSpec, batches: list[list[Utterance]], config: AnonymizeConfig, jobs: int | None = None):
    """Run batches in this process or on the configured backend's workers (results in completion order)."""
    jobs = config.jobs if jobs is None else jobs
    from anoncli.jobs.worker import preload_method
    from anoncli.parallel import make_executor

    local_inline = config.backend == "local" and not config.scheduler and not config.device.startswith("cuda")
    if local_inline and (jobs <= 1 or len(batches) <= 1):
        spec = replace(spec, record_batches=False)  # the caller records each batch as it comes back
        for batch in batches:
            yield process_batch(spec, batch)
        return
    from concurrent.futures import FIRST_COMPLETED, wait
    from functools import partial

    if local_inline:
        # Forked workers load the method as they start (while this process opens the manifest and
        # imports what merging needs) and return their rows; this process records the batches.
        spec = replace(spec, record_batches=False)
    with make_executor(
        config.backend, jobs, spec.options.device, config.scheduler, preload=partial(preload_method, spec)
    ) as executor:
        pending = {executor.submit(process_batch, spec, batch) for batch in batches}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    if config.backend == "dask":
        # Dask workers that died mid-write (their batches were redone elsewhere) leave temp files behind.
        _remove_stale_temp_files(config.out)
