"""ASR utility probe: word error rate (jiwer) on original and anonymized audio, Aw = 100 − WER.

Backends, all offline:
  pocketsphinx  the US-English acoustic model bundled in the pocketsphinx package,
                decoding only the span from 0.3 s before the first to 0.3 s after the
                last 10-ms frame within 40 dB of the loudest one, with at most
                3000 active HMMs per frame (`maxhmmpf`; see `DECODER_SETTINGS`),
                with its bundled language model, or with a closed vocabulary
                (`--vocabulary`) compiled into a JSGF grammar: one word per
                utterance when every reference is a single word (digits), else
                any sequence of the vocabulary's words;
  DIR           a speechbrain `EncoderDecoderASR` from a local folder.
Utterances whose `language` label is not one the backend speaks are skipped
and counted in a note; they are never scored against a recogniser of another language.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from anoncli.dsp.levels import active_span
from anoncli.errors import AnoncliError, InputError
from anoncli.evaluation.extraction import KeyedFileCache, cache_dir, file_key
from anoncli.evaluation.probes import Probe, ProbeContext, ProbeResult, Row, fmt

TRANSCRIPT_COLUMNS = ("transcript", "text")  # label columns read as the reference transcript, first found
POCKETSPHINX_LANGUAGES = {"en", "en-us", "en_us", "eng", "english"}
NAMED_VOCABULARIES = {"digits": "zero one two three four five six seven eight nine oh".split()}
_PUNCT = re.compile(r"[^\w\s']+", flags=re.UNICODE)
# Decoder settings chosen on 60 utterances of RAVDESS actors 09-16 (both sides, McAdams):
# the default (30000 active HMMs per frame, whole file) decoded at 0.96 / 1.62 CPU s per
# original / anonymized file with WER 44.7 / 93.1 %; these settings with the trimmed span
# at 0.57 / 0.74 CPU s and WER 38.6 / 87.8 % (silence at the edges gave insertions), with the
# cepstral mean reset before every file so that the order of decoding never changes a hypothesis.
DECODER_SETTINGS = {"maxhmmpf": 3000}
TRIM_FLOOR_DB = -40.0  # frames more than 40 dB below the loudest one count as silence at the edges
TRIM_MARGIN_S = 0.3  # seconds kept on each side of the active span


def normalise_text(text: str | None) -> str:
    """Lower case, punctuation (except apostrophes) replaced by spaces, white space collapsed; "" for None."""
    return " ".join(_PUNCT.sub(" ", (text or "").lower()).split())


def parse_vocabulary(spec: str | None) -> list[str] | None:
    """`digits`, a comma/space separated word list, or @FILE (one or more words per line)."""
    if not spec:
        return None
    if spec in NAMED_VOCABULARIES:
        return NAMED_VOCABULARIES[spec]
    if spec.startswith("@"):
        path = Path(spec[1:])
        try:
            spec = path.read_text(encoding="utf-8")
        except OSError as err:
            raise InputError(f"--vocabulary {path}: cannot read ({err.strerror or err})") from None
    words = sorted(set(normalise_text(spec.replace(",", " ")).split()))
    if not words:
        raise AnoncliError("--vocabulary: no words given")
    return words


class PocketSphinxRecogniser:
    """Offline English pocketsphinx decoder: its en-us language model, or a JSGF grammar over a given vocabulary.

    Raises AnoncliError when a vocabulary word is not in pocketsphinx's dictionary.
    """

    name = "pocketsphinx"
    languages = POCKETSPHINX_LANGUAGES
    sample_rate = 16000

    def __init__(self, vocabulary: list[str] | None, single_word: bool):
        from pocketsphinx import Decoder

        if vocabulary:
            self.decoder = Decoder(loglevel="FATAL", lm=None, **DECODER_SETTINGS)
            unknown = [w for w in vocabulary if self.decoder.lookup_word(w) is None]
            if unknown:
                raise AnoncliError(f"--vocabulary: words not in the pocketsphinx dictionary: {', '.join(unknown[:10])}")
            alternatives = " | ".join(vocabulary)
            body = f"( {alternatives} )" if single_word else f"( {alternatives} )+"
            self.decoder.add_jsgf_string("vocabulary", f"#JSGF V1.0;\ngrammar vocabulary;\npublic <utt> = {body} ;\n")
            self.decoder.activate_search("vocabulary")
            self.name = f"pocketsphinx+{'word' if single_word else 'sequence'}-grammar({len(vocabulary)} words)"
        else:
            self.decoder = Decoder(loglevel="FATAL", **DECODER_SETTINGS)
            self.name = "pocketsphinx+en-us-lm"

    def transcribe(self, wave16k: np.ndarray) -> str:
        """Normalised hypothesis for one 16 kHz float wave in [-1, 1]: its active span (see the module
        docstring), clipped and decoded as 16-bit PCM."""
        start, stop = active_span(wave16k, self.sample_rate, TRIM_FLOOR_DB, TRIM_MARGIN_S)
        pcm = (np.clip(wave16k[start:stop], -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        self.decoder.reinit_feat()  # the cepstral mean starts afresh: a hypothesis never depends on the files before it
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return normalise_text(hyp.hypstr if hyp else "")


class SpeechBrainRecogniser:
    """A speechbrain `EncoderDecoderASR` loaded from a local folder; raises AnoncliError when it has no hyperparams.yaml."""

    sample_rate = 16000

    def __init__(self, folder: Path, language: str):
        folder = Path(folder)
        if not (folder / "hyperparams.yaml").is_file():
            raise AnoncliError(
                f"--asr-model {folder}: not a local speechbrain model folder (no hyperparams.yaml); nothing is downloaded"
            )
        os.environ["HF_HUB_OFFLINE"] = "1"
        from speechbrain.inference.ASR import EncoderDecoderASR

        self.model = EncoderDecoderASR.from_hparams(source=str(folder.resolve()), savedir=str(folder.resolve()))
        self.languages = {language.lower()}
        self.name = f"speechbrain:{folder.name}"

    def transcribe(self, wave16k: np.ndarray) -> str:
        """Normalised hypothesis for one 16 kHz float32 mono wave."""
        import torch

        with torch.inference_mode():
            batch = torch.from_numpy(np.asarray(wave16k, dtype=np.float32))[None]
            words, _ = self.model.transcribe_batch(batch, torch.tensor([1.0]))
        return normalise_text(words[0] if isinstance(words[0], str) else " ".join(words[0]))


# Recognisers built in this process (a worker builds its own once and reuses it for every chunk).
_RECOGNISERS: dict[tuple, object] = {}
# Files decoded per task: large enough to amortise the hand-over, small enough to balance two cores.
CHUNK = 4
ASR_CACHE_VERSION = 2  # 2: decoder settings, edge trimming, cepstral mean reset per file


def _recogniser(spec: tuple):
    """spec = (asr_model, vocabulary words or None, single_word, asr_language)."""
    if spec not in _RECOGNISERS:
        _RECOGNISERS.clear()
        asr_model, words, single, language = spec
        _RECOGNISERS[spec] = (
            SpeechBrainRecogniser(Path(asr_model), language)
            if asr_model
            else PocketSphinxRecogniser(list(words) if words else None, single)
        )
    return _RECOGNISERS[spec]


def _transcribe_paths(spec: tuple, paths: list[str]) -> list[str]:
    """Hypotheses for `paths` (decoded, mixed down, 16 kHz); runs in this process or in a worker."""
    from anoncli.scoring.features import load_16k

    recogniser = _recogniser(spec)
    return [recogniser.transcribe(load_16k(Path(path))[0]) for path in paths]


class HypothesisCache(KeyedFileCache):
    """Hypotheses of original files, keyed by file identity (path, size, mtime) and recogniser.

    A second method evaluated on the same corpus decodes only its own side.
    Stored as JSON under the evaluation cache folder; a damaged cache is only a lost speed-up.
    """

    lost = "the originals' hypotheses are not cached"

    def __init__(self, recogniser_name: str, enabled: bool = True):
        import hashlib

        tag = hashlib.sha1(f"{recogniser_name}|{ASR_CACHE_VERSION}".encode()).hexdigest()[:16]
        super().__init__(cache_dir() / f"asr-{tag}.json", enabled)

    @staticmethod
    def key(path: Path) -> str | None:
        """The file's identity (resolved path, size, mtime), or None when it cannot be read."""
        try:
            return file_key(path)
        except OSError:
            return None

    def _read(self) -> dict:
        import json

        return dict(json.loads(self.path.read_text(encoding="utf-8")))

    def _write(self, handle) -> None:
        import json

        handle.write(json.dumps(self.entries).encode("utf-8"))


def run_asr(
    pairs,
    transcripts: list[str | None],
    languages: list[str | None],
    valid: np.ndarray,
    asr_model: str | None = None,
    vocabulary: str | None = None,
    asr_language: str = "en",
    progress: bool = True,
    executor=None,
    use_cache: bool = True,
):
    """Word error rates of both sides. Returns (summary, per-utterance columns, notes).

    pairs: (utterance, anonymized path) per pair; transcripts and languages per pair; valid: (N,) bool.
    Decoding runs in chunks on `executor` (any concurrent.futures-style executor) when one is given,
    else in this process; hypotheses of original files come from the cache when it has them.
    """
    import jiwer

    from anoncli.progress import progress_bar

    n = len(pairs)
    refs = [normalise_text(t) for t in transcripts]
    with_text = np.array([bool(r) for r in refs]) & valid
    notes = []
    if not with_text.any():
        return None, {}, ["asr: skipped (no transcript label)"]
    words = parse_vocabulary(vocabulary)
    backend_name = f"speechbrain:{Path(asr_model).name}" if asr_model else "pocketsphinx (en-us)"
    backend_languages = {asr_language.lower()} if asr_model else POCKETSPHINX_LANGUAGES
    # A missing language label means "the backend's language" (asr_language, default en).
    spoken = np.array([(lang or asr_language).lower() in backend_languages for lang in languages])
    skipped = with_text & ~spoken
    if skipped.any():
        langs = sorted({(languages[i] or "?") for i in np.flatnonzero(skipped)})
        notes.append(
            f"asr: {int(skipped.sum())} utterances in language {', '.join(langs)} skipped: "
            f"{backend_name} recognises {', '.join(sorted(backend_languages))} only"
        )
    todo = np.flatnonzero(with_text & spoken)
    if todo.size == 0:
        return None, {}, notes
    single = all(len(refs[i].split()) == 1 for i in todo)
    spec = (asr_model, tuple(words) if words else None, single, asr_language)
    recogniser = _recogniser(spec)  # built here first: a bad --vocabulary or model folder fails before any work
    if words:
        oov = sum(1 for i in todo for w in refs[i].split() if w not in words)
        if oov:
            notes.append(f"asr: {oov} reference words are outside --vocabulary and count as errors")
    hyp = {"original": np.full(n, None, dtype=object), "anonymized": np.full(n, None, dtype=object)}
    cache = HypothesisCache(recogniser.name, enabled=use_cache)
    jobs: list[tuple[int, str, str, str | None]] = []  # (pair, side, path, cache key of an original file)
    for i in todo:
        utt, anon_path = pairs[i]
        key = HypothesisCache.key(Path(utt.path))
        cached = cache.get(key)
        if cached is not None:
            hyp["original"][i] = cached
        else:
            jobs.append((i, "original", str(utt.path), key))
        jobs.append((i, "anonymized", str(anon_path), None))
    chunks = [jobs[k : k + CHUNK] for k in range(0, len(jobs), CHUNK)]
    bar = progress_bar(total=len(jobs), desc="asr", unit="files", enabled=progress, leave=False)

    def take(chunk, hypotheses) -> None:
        """Store one finished chunk's hypotheses (originals also in the cache) and advance the bar."""
        for (i, side, _path, key), text in zip(chunk, hypotheses):
            hyp[side][i] = text
            if side == "original":
                cache.put(key, text)
        bar.update(len(chunk))

    try:
        if executor is None:
            for chunk in chunks:
                take(chunk, _transcribe_paths(spec, [job[2] for job in chunk]))
        else:
            from concurrent.futures import as_completed

            futures = {executor.submit(_transcribe_paths, spec, [job[2] for job in chunk]): chunk for chunk in chunks}
            for future in as_completed(futures):
                take(futures[future], future.result())
    finally:
        bar.close()
        cache.save()
    summary = {"backend": recogniser.name, "n": int(todo.size)}
    per_utt = {}
    for side in ("original", "anonymized"):
        ref_list = [refs[i] for i in todo]
        hyp_list = [hyp[side][i] or "" for i in todo]
        wer = 100.0 * jiwer.wer(ref_list, hyp_list)
        summary[side] = {"WER": wer, "Aw": 100.0 - wer}
        column = np.full(n, np.nan)
        for i, r, h in zip(todo, ref_list, hyp_list):
            column[i] = 100.0 * jiwer.wer(r, h)
        per_utt[f"asr.{side}.wer"] = column
        per_utt[f"asr.{side}.hyp"] = hyp[side]
    return summary, per_utt, notes


class AsrProbe(Probe):
    """Applies when the corpus has a transcript label. summary.json `asr`: n, backend and per side
    (original, anonymized) WER and Aw; scores.parquet `asr.*` columns. Gate alias: `asr.<figure>`
    is the anonymized side's `asr.anonymized.<figure>`."""

    kind = "asr"
    table_rank = 30
    gate_aliases = {"asr": "asr.anonymized"}

    @classmethod
    def available(cls, ctx: ProbeContext) -> tuple[list[Probe], list[str]]:
        return ([cls()] if any(c in ctx.corpus.label_columns for c in TRANSCRIPT_COLUMNS) else []), []

    def expected(self) -> dict:
        nan = float("nan")
        return {"n": nan, **{side: {"WER": nan, "Aw": nan} for side in ("original", "anonymized")}}

    def run(self, ctx: ProbeContext) -> ProbeResult:
        config = ctx.config
        text_column = next(c for c in TRANSCRIPT_COLUMNS if c in ctx.corpus.label_columns)
        summary, columns, notes = run_asr(
            ctx.pairing.pairs,
            ctx.labels(text_column),
            ctx.labels("language"),
            ctx.valid,
            config.asr_model,
            config.vocabulary,
            config.asr_language,
            progress=config.progress,
            executor=ctx.executor,
            use_cache=config.use_cache,
        )
        if not summary:
            return ProbeResult(notes=notes)
        return ProbeResult(summary, columns, notes)

    @classmethod
    def owns(cls, key: str, entry) -> bool:
        return key == cls.kind and "original" in entry

    @classmethod
    def table_rows(cls, key: str, entry: dict) -> list[Row]:
        return [
            (
                f"ASR WER % ({entry.get('backend', '')})",
                fmt(entry["original"]["WER"], 1),
                fmt(entry["anonymized"]["WER"], 1),
                "",
            ),
            ("ASR Aw = 100 − WER", fmt(entry["original"]["Aw"], 1), fmt(entry["anonymized"]["Aw"], 1), ""),
        ]
