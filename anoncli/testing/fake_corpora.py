"""Tiny fake corpora in the exact on-disk layout of each corpus anoncli knows.

Each `make_<layout>(parent)` writes synthetic tones (0.1 s, one pitch per
speaker) under real file names with the real metadata formats
(SPEAKERS.TXT, speaker-info.txt, VideoDemographics.csv, audioMNIST_meta.txt,
TIMIT .TXT/.WRD with NIST SPHERE audio, Kaldi tables ...) and returns a
`FakeCorpus`: the folder to open, the layout it must be detected as, and the
labels every utterance must get. Tests, docs examples and the benchmark use
them; no real speech is involved.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 8000
DURATION_S = 0.1


@dataclass
class FakeCorpus:
    """A written fake corpus: its folder, the layout it must be detected as, and utt_id -> the labels it must get."""

    root: Path
    layout: str
    expected: dict[str, dict[str, str | None]] = field(default_factory=dict)  # utt_id -> labels that must match


def tone(seed: int, duration_s: float = DURATION_S, rate: int = RATE) -> np.ndarray:
    """A 0.3-amplitude sine with slow tremolo, pitch 100 + 17 * (seed % 12) Hz: (duration_s * rate,) float32."""
    t = np.arange(int(duration_s * rate)) / rate
    f0 = 100.0 + 17.0 * (seed % 12)
    return (0.3 * np.sin(2 * np.pi * f0 * t) * (1 + 0.2 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def write_tone(path: Path, seed: int, fmt: str | None = None) -> Path:
    """Write `tone(seed)` at 8 kHz as 16-bit PCM (FLAC for .flac, else WAV unless `fmt` says), creating folders; returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = fmt or {".flac": "FLAC"}.get(path.suffix.lower(), "WAV")
    sf.write(str(path), tone(seed), RATE, format=kind, subtype="PCM_16")
    return path


def make_librispeech(parent: Path) -> FakeCorpus:
    """LibriSpeech dev-clean: two speakers, two chapters' FLAC files, trans.txt and SPEAKERS.TXT."""
    root = parent / "LibriSpeech"
    speakers = {"84": ("F", "dev-clean", "Christie Nowak"), "174": ("M", "dev-clean", "Peter Eastman")}
    lines = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    lines += [f"{spk:<5}| {sex} | {subset:<16} | 25.00 | {name}" for spk, (sex, subset, name) in speakers.items()]
    root.mkdir(parents=True, exist_ok=True)
    (root / "SPEAKERS.TXT").write_text("\n".join(lines) + "\n")
    expected = {}
    for spk, chapter in (("84", "121123"), ("174", "50561")):
        folder = root / "dev-clean" / spk / chapter
        trans = []
        for n in range(2):
            utt = f"{spk}-{chapter}-{n:04d}"
            write_tone(folder / f"{utt}.flac", int(spk) + n)
            text = f"WORDS OF SPEAKER {spk} NUMBER {n}"
            trans.append(f"{utt} {text}")
            expected[utt] = {
                "speaker": spk,
                "gender": "female" if speakers[spk][0] == "F" else "male",
                "chapter": chapter,
                "subset": "dev-clean",
                "transcript": text,
            }
        (folder / f"{spk}-{chapter}.trans.txt").write_text("\n".join(trans) + "\n")
    return FakeCorpus(root, "librispeech", expected)


def make_libritts(parent: Path) -> FakeCorpus:
    """LibriTTS: per-utterance WAV with .normalized.txt, and speakers.tsv."""
    root = parent / "LibriTTS"
    root.mkdir(parents=True, exist_ok=True)
    (root / "speakers.tsv").write_text(
        "READER\tGENDER\tSUBSET\tNAME\n1272\tM\tdev-clean\tJohn Rose\n2035\tF\tdev-clean\tSharon Bautista\n"
    )
    expected = {}
    for spk, chapter in (("1272", "128104"), ("2035", "147961")):
        for n in range(2):
            utt = f"{spk}_{chapter}_00000{n}_000000"
            folder = root / "dev-clean" / spk / chapter
            write_tone(folder / f"{utt}.wav", int(spk) + n)
            text = f"Sentence {n} read by {spk}."
            (folder / f"{utt}.normalized.txt").write_text(text)
            (folder / f"{utt}.original.txt").write_text(text.upper())
            expected[utt] = {
                "speaker": spk,
                "gender": "male" if spk == "1272" else "female",
                "chapter": chapter,
                "subset": "dev-clean",
                "transcript": text,
            }
    return FakeCorpus(root, "libritts", expected)


def make_vctk(parent: Path) -> FakeCorpus:
    """VCTK 0.92: flac per microphone in wav48_silence_trimmed, IDs with `p` in speaker-info.txt."""
    root = parent / "VCTK-Corpus-0.92"
    root.mkdir(parents=True, exist_ok=True)
    (root / "speaker-info.txt").write_text(
        "ID  AGE  GENDER  ACCENTS  REGION COMMENTS \n"
        "p225  23  F    English    Southern  England\n"
        "p226  22  M    English    Surrey\n"
        "p315  23  M    American    Connecticut  (mic2 files unavailable)\n"
    )
    expected = {}
    for spk in ("p225", "p226"):
        for n in (1, 2):
            text = f"Please call Stella number {n}."
            (root / "txt" / spk).mkdir(parents=True, exist_ok=True)
            (root / "txt" / spk / f"{spk}_{n:03d}.txt").write_text(text + "\n")
            for mic in ("mic1", "mic2"):
                utt = f"{spk}_{n:03d}_{mic}"
                write_tone(root / "wav48_silence_trimmed" / spk / f"{utt}.flac", int(spk[1:]) + n)
                expected[utt] = {
                    "speaker": spk,
                    "gender": "female" if spk == "p225" else "male",
                    "age": "23" if spk == "p225" else "22",
                    "accent": "English",
                    "region": "Southern England" if spk == "p225" else "Surrey",
                    "transcript": text,
                    "mic": mic,
                }
    return FakeCorpus(root, "vctk", expected)


def make_ravdess(parent: Path) -> FakeCorpus:
    """RAVDESS: two actors (01 male, 12 female), four emotions each, in Actor_NN folders."""
    root = parent / "Audio_Speech_Actors_01-24"
    expected = {}
    names = {"01": "neutral", "02": "calm", "05": "anger", "08": "surprise"}
    for actor in ("01", "12"):
        for emotion, name in names.items():
            intensity = "01" if emotion in ("01",) else "02"
            stem = f"03-01-{emotion}-{intensity}-02-01-{actor}"
            write_tone(root / f"Actor_{actor}" / f"{stem}.wav", int(actor) + int(emotion))
            expected[stem] = {
                "speaker": actor,
                "gender": "male" if actor == "01" else "female",
                "emotion": name,
                "intensity": "normal" if intensity == "01" else "strong",
                "statement": "02",
                "transcript": "Dogs are sitting by the door",
                "vocal_channel": "speech",
            }
    return FakeCorpus(root, "ravdess", expected)


def make_cremad(parent: Path) -> FakeCorpus:
    """CREMA-D: AudioWAV files named ActorID_Sentence_Emotion_Level and VideoDemographics.csv."""
    root = parent / "CREMA-D"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "VideoDemographics.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ActorID", "Age", "Sex", "Race", "Ethnicity"])
        writer.writerow(["1001", "51", "Male", "Caucasian", "Not Hispanic"])
        writer.writerow(["1002", "21", "Female", "Caucasian", "Not Hispanic"])
    expected = {}
    for actor in ("1001", "1002"):
        for sentence, emotion, level, name, intensity in (
            ("DFA", "ANG", "XX", "anger", "unspecified"),
            ("IEO", "HAP", "HI", "happiness", "high"),
            ("TSI", "SAD", "LO", "sadness", "low"),
        ):
            stem = f"{actor}_{sentence}_{emotion}_{level}"
            write_tone(root / "AudioWAV" / f"{stem}.wav", int(actor) + len(stem))
            expected[stem] = {
                "speaker": actor,
                "gender": "male" if actor == "1001" else "female",
                "age": "51" if actor == "1001" else "21",
                "emotion": name,
                "intensity": intensity,
                "text_id": sentence,
            }
    expected["1001_IEO_HAP_HI"]["transcript"] = "It's eleven o'clock"
    return FakeCorpus(root, "cremad", expected)


def make_emodb(parent: Path, metadata: bool = False) -> FakeCorpus:
    """EmoDB as distributed: wav/SSTTTEV.wav, no label file (or, with `metadata`, an audiofolder table too)."""
    root = parent / "emodb"
    expected = {}
    letters = {
        "W": "anger",
        "L": "boredom",
        "E": "disgust",
        "A": "fear",
        "F": "happiness",
        "T": "sadness",
        "N": "neutral",
    }
    for i, (speaker, gender) in enumerate((("03", "male"), ("08", "female"))):
        for j, (letter, emotion) in enumerate(letters.items()):
            text = "a01" if j % 2 else "b10"
            stem = f"{speaker}{text}{letter}{'abc'[j % 3]}"
            write_tone(root / "wav" / f"{stem}.wav", i * 7 + j)
            expected[stem] = {"speaker": speaker, "gender": gender, "emotion": emotion, "text_id": text}
    if metadata:
        with open(root / "metadata.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file_name", "speaker", "emotion", "session"])
            for stem, labels in sorted(expected.items()):
                writer.writerow([f"wav/{stem}.wav", labels["speaker"], labels["emotion"], "s1"])
                labels["session"] = "s1"
    return FakeCorpus(root, "emodb", expected)


def _nist(path: Path, seed: int) -> None:
    write_tone(path, seed, fmt="NIST")


def make_timit(parent: Path) -> FakeCorpus:
    """TIMIT: NIST SPHERE .WAV files with .TXT transcripts in TRAIN|TEST/DRn/speaker folders."""
    root = parent / "TIMIT"
    expected = {}
    for split, region, speaker in (("TRAIN", "DR1", "FCJF0"), ("TEST", "DR2", "MABC0")):
        for text_id, text in (
            ("SA1", "She had your dark suit in greasy wash water all year."),
            ("SX12", "Bright sunshine shimmers on the ocean."),
        ):
            folder = root / split / region / speaker
            _nist(folder / f"{text_id}.WAV", len(speaker) + len(text_id))
            (folder / f"{text_id}.TXT").write_text(f"0 {int(DURATION_S * 16000)} {text}\n")
            words = text.rstrip(".").split()
            step = int(DURATION_S * 16000) // len(words)
            (folder / f"{text_id}.WRD").write_text(
                "".join(f"{i * step} {(i + 1) * step} {w.lower()}\n" for i, w in enumerate(words))
            )
            expected[f"{speaker}_{text_id}"] = {
                "speaker": speaker,
                "gender": "female" if speaker[0] == "F" else "male",
                "dialect_region": region,
                "split": split.lower(),
                "text_id": text_id,
                "transcript": text,
            }
    return FakeCorpus(root, "timit", expected)


def make_audiomnist(parent: Path) -> FakeCorpus:
    """AudioMNIST: data/NN/D_NN_I.wav and audioMNIST_meta.txt (with a trailing comma, as some copies have)."""
    root = parent / "AudioMNIST"
    meta = {
        "01": {
            "accent": "german",
            "age": "30",
            "gender": "male",
            "native speaker": "no",
            "origin": "Europe, Germany, Wuerzburg",
            "recordingdate": "17-06-22-11-04-28",
            "recordingroom": "Kino",
        },
        "02": {
            "accent": "German",
            "age": "25",
            "gender": "female",
            "native speaker": "yes",
            "origin": "Europe, Germany, Hamburg",
            "recordingdate": "17-06-26-17-57-29",
            "recordingroom": "Kino",
        },
    }
    (root / "data").mkdir(parents=True, exist_ok=True)
    # The published file is JSON with a trailing comma after the last speaker.
    text = json.dumps(meta, indent=4)
    (root / "data" / "audioMNIST_meta.txt").write_text(text[:-2] + ",\n}")
    expected = {}
    for speaker in meta:
        for digit in (0, 7):
            for rep in (0, 1):
                stem = f"{digit}_{speaker}_{rep}"
                write_tone(root / "data" / speaker / f"{stem}.wav", digit + rep)
                expected[stem] = {
                    "speaker": speaker,
                    "gender": meta[speaker]["gender"],
                    "age": meta[speaker]["age"],
                    "digit": str(digit),
                    "transcript": ("zero", "seven")[digit == 7],
                }
    return FakeCorpus(root, "audiomnist", expected)


def make_fsdd(parent: Path) -> FakeCorpus:
    """Free Spoken Digit Dataset: recordings/D_name_I.wav."""
    root = parent / "free-spoken-digit-dataset"
    expected = {}
    for speaker in ("george", "jackson"):
        for digit in (3, 9):
            for rep in (0, 10):
                stem = f"{digit}_{speaker}_{rep}"
                write_tone(root / "recordings" / f"{stem}.wav", digit + rep)
                expected[stem] = {
                    "speaker": speaker,
                    "gender": "male",
                    "digit": str(digit),
                    "transcript": ("three", "nine")[digit == 9],
                    "repetition": str(rep),
                }
    return FakeCorpus(root, "fsdd", expected)


def make_kaldi(parent: Path) -> FakeCorpus:
    """A data dir whose wav.scp has one path relative to the data dir and the others absolute."""
    audio = parent / "kaldi_audio"
    root = parent / "data" / "dev"
    root.mkdir(parents=True, exist_ok=True)
    rows = [
        ("spk1-utt1", "spk1", "f", "HELLO WORLD", "neu"),
        ("spk1-utt2", "spk1", "f", "GOOD MORNING", "hap"),
        ("spk2-utt1", "spk2", "m", "SEE YOU", "ang"),
    ]
    scp = []
    for i, (utt, _, _, _, _) in enumerate(rows):
        if i == 0:
            write_tone(root / "local_wav" / f"{utt}.wav", i)
            scp.append(f"{utt} local_wav/{utt}.wav")
        else:
            scp.append(f"{utt} {write_tone(audio / f'{utt}.wav', i).resolve()}")
    (root / "wav.scp").write_text("\n".join(scp) + "\n")
    (root / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s, *_ in rows))
    (root / "spk2utt").write_text("spk1 spk1-utt1 spk1-utt2\nspk2 spk2-utt1\n")
    (root / "spk2gender").write_text("spk1 f\nspk2 m\n")
    (root / "text").write_text("".join(f"{u} {t}\n" for u, _, _, t, _ in rows))
    (root / "utt2emo").write_text("".join(f"{u} {e}\n" for u, _, _, _, e in rows))
    emotions = {"neu": "neutral", "hap": "happiness", "ang": "anger"}
    expected = {
        u: {"speaker": s, "gender": "female" if g == "f" else "male", "transcript": t, "emotion": emotions[e]}
        for u, s, g, t, e in rows
    }
    return FakeCorpus(root, "kaldi", expected)


def make_audiofolder(parent: Path, kind: str = "csv") -> FakeCorpus:
    """Hugging Face audiofolder: four clips and metadata.csv (or metadata.jsonl with `kind="jsonl"`) with speaker, gender, emotion."""
    root = parent / "my_dataset"
    rows = [
        ("clips/a.wav", "alice", "F", "anger"),
        ("clips/b.wav", "alice", "F", "neutral"),
        ("clips/c.wav", "bob", "M", "anger"),
        ("clips/sub/d.wav", "bob", "m", "sadness"),
    ]
    for i, (name, *_) in enumerate(rows):
        write_tone(root / name, i)
    records = [{"file_name": n, "speaker": s, "gender": g, "emotion": e} for n, s, g, e in rows]
    if kind == "jsonl":
        (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        with open(root / "metadata.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    expected = {
        n.rsplit(".", 1)[0]: {"speaker": s, "gender": "female" if g.upper() == "F" else "male", "emotion": e}
        for n, s, g, e in rows
    }
    return FakeCorpus(root, "audiofolder", expected)


def make_plain(parent: Path) -> FakeCorpus:
    """A plain folder of audio without labels (names with sub-folders and a space)."""
    root = parent / "recordings_2024"
    for i, name in enumerate(("interview_1.wav", "interview_2.wav", "day2/take 3.flac")):
        write_tone(root / name, i)
    return FakeCorpus(root, "plain", {"interview_1": {}, "interview_2": {}, "day2/take 3": {}})


# Layout name -> generator: one fake corpus per layout anoncli detects.
FAKE_CORPORA: dict[str, Callable[[Path], FakeCorpus]] = {
    "librispeech": make_librispeech,
    "libritts": make_libritts,
    "vctk": make_vctk,
    "ravdess": make_ravdess,
    "cremad": make_cremad,
    "emodb": make_emodb,
    "timit": make_timit,
    "audiomnist": make_audiomnist,
    "fsdd": make_fsdd,
    "kaldi": make_kaldi,
    "audiofolder": make_audiofolder,
    "plain": make_plain,
}
