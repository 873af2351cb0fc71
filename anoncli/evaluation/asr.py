"""ASR utility probe: word error rate (jiwer) on original and anonymized audio, Aw = 100 − WER.

Backends, all offline:
  pocketsphinx  the US-English acoustic model bundled in the pocketsphinx package,
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

from anoncli.errors import AnoncliError, InputError
from anoncli.evaluation.probes import Probe, ProbeContext, ProbeResult, Row, fmt

TRANSCRIPT_COLUMNS = ("transcript", "text")  # label columns read as the reference transcript, first found
POCKETSPHINX_LANGUAGES = {"en", "en-us", "en_us", "eng", "english"}
NAMED_VOCABULARIES = {"digits": "zero one two three four five six seven eight nine oh".split()}
_PUNCT = re.compile(r"[^\w\s']+", flags=re.UNICODE)


def normalise_text(text: str | None) -> str:
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
    words = sorted({w for w in normalise_text(spec.replace(",", " ")).split()})
    if not words:
        raise AnoncliError("--vocabulary: no words given")
    return words


class PocketSphinxRecogniser:
    name = "pocketsphinx"
    languages = POCKETSPHINX_LANGUAGES
    sample_rate = 16000

    def __init__(self, vocabulary: list[str] | None, single_word: bool):
        from pocketsphinx import Decoder

        if vocabulary:
            self.decoder = Decoder(loglevel="FATAL", lm=None)
            unknown = [w for w in vocabulary if self.decoder.lookup_word(w) is None]
            if unknown:
                raise AnoncliError(f"--vocabulary: words not in the pocketsphinx dictionary: {', '.join(unknown[:10])}")
            alternatives = " | ".join(vocabulary)
            body = f"( {alternatives} )" if single_word else f"( {alternatives} )+"
            self.decoder.add_jsgf_string("vocabulary", f"#JSGF V1.0;\ngrammar vocabulary;\npublic <utt> = {body} ;\n")
            self.decoder.activate_search("vocabulary")
            self.name = f"pocketsphinx+{'word' if single_word else 'sequence'}-grammar({len(vocabulary)} words)"
        else:
            self.decoder = Decoder(loglevel="FATAL")
            self.name = "pocketsphinx+en-us-lm"

    def transcribe(self, wave16k: np.ndarray) -> str:
        pcm = (np.clip(wave16k, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return normalise_text(hyp.hypstr if hyp else "")


class SpeechBrainRecogniser:
    sample_rate = 16000

    def __init__(self, folder: Path, language: str):
        folder = Path(folder)
        if not (folder / "hyperparams.yaml").is_file():
            raise AnoncliError(f"--asr-model {folder}: not a local speechbrain model folder (no hyperparams.yaml); nothing is downloaded")
        os.environ["HF_HUB_OFFLINE"] = "1"
        from speechbrain.inference.ASR import EncoderDecoderASR

        self.model = EncoderDecoderASR.from_hparams(source=str(folder.resolve()), savedir=str(folder.resolve()))
        self.languages = {language.lower()}
        self.name = f"speechbrain:{folder.name}"

    def transcribe(self, wave16k: np.ndarray) -> str:
        import torch

        with torch.inference_mode():
            batch = torch.from_numpy(np.asarray(wave16k, dtype=np.float32))[None]
            words, _ = self.model.transcribe_batch(batch, torch.tensor([1.0]))
        return normalise_text(words[0] if isinstance(words[0], str) else " ".join(words[0]))


def run_asr(pairs, transcripts: list[str | None], languages: list[str | None], valid: np.ndarray,
            asr_model: str | None = None, vocabulary: str | None = None, asr_language: str = "en",
            progress: bool = True):
    """Returns (summary, per-utterance columns, notes)."""
    import jiwer
    from anoncli.progress import progress_bar

    from anoncli.scoring.features import load_16k

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
        notes.append(f"asr: {int(skipped.sum())} utterances in language {', '.join(langs)} skipped: "
                     f"{backend_name} recognises {', '.join(sorted(backend_languages))} only")
    todo = np.flatnonzero(with_text & spoken)
    if todo.size == 0:
        return None, {}, notes
    if asr_model:
        recogniser = SpeechBrainRecogniser(Path(asr_model), asr_language)
    else:
        single = all(len(refs[i].split()) == 1 for i in todo)
        recogniser = PocketSphinxRecogniser(words, single)
    if words:
        oov = sum(1 for i in todo for w in refs[i].split() if w not in words)
        if oov:
            notes.append(f"asr: {oov} reference words are outside --vocabulary and count as errors")
    hyp = {"original": np.full(n, None, dtype=object), "anonymized": np.full(n, None, dtype=object)}
    for i in progress_bar(todo, desc="asr", unit="utt", enabled=progress, leave=False):
        utt, anon_path = pairs[i]
        hyp["original"][i] = recogniser.transcribe(load_16k(utt.path)[0])
        hyp["anonymized"][i] = recogniser.transcribe(load_16k(anon_path)[0])
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
        summary, columns, notes = run_asr(ctx.pairing.pairs, ctx.labels(text_column), ctx.labels("language"),
                                          ctx.valid, config.asr_model, config.vocabulary, config.asr_language,
                                          progress=config.progress)
        if not summary:
            return ProbeResult(notes=notes)
        return ProbeResult(summary, columns, notes)

    @classmethod
    def owns(cls, key: str, entry) -> bool:
        return key == cls.kind and "original" in entry

    @classmethod
    def table_rows(cls, key: str, entry: dict) -> list[Row]:
        return [
            (f"ASR WER % ({entry.get('backend', '')})", fmt(entry["original"]["WER"], 1),
             fmt(entry["anonymized"]["WER"], 1), ""),
            ("ASR Aw = 100 − WER", fmt(entry["original"]["Aw"], 1), fmt(entry["anonymized"]["Aw"], 1), ""),
        ]
