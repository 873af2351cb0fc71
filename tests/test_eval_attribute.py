"""Attribute attackers on synthetic voices: find a planted attribute, fall to chance without one."""

import numpy as np
import pytest
import soundfile as sf
from synth_audio import voiced

from anoncli.corpus import Utterance
from anoncli.evaluation.attribute import ProbeSpec, candidate_columns, run_attribute
from anoncli.evaluation.extraction import extract
from anoncli.scoring.embeddings import ResemblyzerBackend

RATE = 16000
N_SPEAKERS = 12
PER_SPEAKER = 4


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """12 speakers; "gender" is coded only by pitch (low/high), formants vary independently.

    The anonymized copy of every utterance is one shared mid-pitch voice, so it
    carries no trace of the planted attribute.
    """
    root = tmp_path_factory.mktemp("voices")
    rng = np.random.default_rng(7)
    pairs, genders, speakers = [], [], []
    for s in range(N_SPEAKERS):
        gender = "high" if s % 2 else "low"
        base_f0 = rng.uniform(190, 240) if gender == "high" else rng.uniform(95, 130)
        formants = tuple(rng.uniform(lo, hi) for lo, hi in ((450, 900), (1000, 1900), (2300, 3000)))
        for i in range(PER_SPEAKER):
            rel = f"spk{s}/u{i}.wav"
            (root / "orig" / f"spk{s}").mkdir(parents=True, exist_ok=True)
            (root / "anon" / f"spk{s}").mkdir(parents=True, exist_ok=True)
            seed = s * 100 + i
            sf.write(
                root / "orig" / rel, voiced(0.8, RATE, base_f0 * rng.uniform(0.95, 1.05), formants, seed=seed), RATE
            )
            sf.write(
                root / "anon" / rel,
                voiced(0.8, RATE, 160.0 * rng.uniform(0.95, 1.05), (650, 1400, 2600), seed=seed),
                RATE,
            )
            utt = Utterance(f"spk{s}/u{i}", root / "orig" / rel, rel, {"speaker": f"spk{s}", "gender": gender})
            pairs.append((utt, root / "anon" / rel))
            genders.append(gender)
            speakers.append(f"spk{s}")
    backend = ResemblyzerBackend()
    data = extract(pairs, backend, backend, need_signal=False, need_attr=True, use_cache=False, progress=False)
    return data, genders, speakers


def test_finds_planted_pitch_attribute_and_loses_it_after_anonymization(synthetic):
    data, genders, speakers = synthetic
    spec = ProbeSpec("gender", ["high", "low"])
    summary, per_utt, confusions = run_attribute(
        spec, genders, speakers, data.original.features, data.anonymized.features, data.ok, seed=0, n_boot=20
    )
    assert summary["split"] == "speaker-disjoint folds"
    assert summary["original"]["acc"] >= 90.0
    assert summary["original"]["auc"] >= 0.9
    assert summary["original"]["gr"] <= 20.0
    # The anonymized voices carry no pitch cue: both attackers near chance (50 %).
    assert summary["informed"]["acc"] <= 70.0
    assert summary["ignorant"]["gr"] >= 60.0
    assert np.all(np.isfinite(per_utt["gender.original.p_true"]))
    assert confusions["original"].sum() == len(genders)


def test_random_labels_stay_at_chance(synthetic):
    data, _, speakers = synthetic
    rng = np.random.default_rng(1)
    labels = list(rng.choice(["a", "b"], size=len(speakers)))
    spec = ProbeSpec("coin", ["a", "b"])
    summary, _, _ = run_attribute(
        spec,
        labels,
        speakers,
        data.original.features,
        data.original.features,
        data.ok,
        seed=0,
        n_boot=0,
        attackers=("original",),
    )
    assert summary["original"]["acc"] <= 70.0
    assert summary["original"]["norm"] >= 40.0


def test_speaker_id_uses_folds_within_speakers(synthetic):
    data, _, speakers = synthetic
    spec = ProbeSpec("speaker", sorted(set(speakers)))
    summary, per_utt, _ = run_attribute(
        spec,
        speakers,
        speakers,
        data.original.features,
        data.original.features,
        data.ok,
        seed=0,
        n_boot=0,
        attackers=("original",),
    )
    assert summary["split"] == "within-speaker folds"
    assert summary["original"]["acc"] >= 80.0  # distinct formants and pitch per speaker
    assert summary["original"]["chance"] == pytest.approx(100.0 / N_SPEAKERS)


def test_candidate_columns_rules():
    rows = [
        {
            "speaker": f"s{i % 4}",
            "gender": "f" if i % 4 < 2 else "m",
            "age": str(30 + i % 4),
            "language": "en",
            "transcript": f"t{i}",
        }
        for i in range(16)
    ]
    speakers = [r["speaker"] for r in rows]
    specs, notes = candidate_columns(rows, speakers, ["speaker", "gender", "age", "language", "transcript"])
    assert [s.column for s in specs] == ["speaker", "gender"]
    assert any(n.startswith("age") for n in notes) and any(n.startswith("language") for n in notes)


def test_measurement_columns_are_not_class_labels():
    # a metadata duration column has few distinct values on a small corpus, each spoken by several
    # speakers; it must not be attacked as a 3-class label, while integer codes stay categorical
    rows = [
        {"speaker": f"s{i % 4}", "label_duration_s": ("3.07", "3.27", "4.2")[i % 3], "statement": ("01", "02")[i % 2]}
        for i in range(24)
    ]
    speakers = [r["speaker"] for r in rows]
    specs, notes = candidate_columns(rows, speakers, ["label_duration_s", "statement"])
    assert [s.column for s in specs] == ["statement"]
    assert notes == ["label_duration_s: numeric measurements (3.07–4.2), not a categorical label"]


def test_head_saves_and_loads_with_weights_only(tmp_path):
    from anoncli.evaluation.attribute import MODEL_KIND, LogisticHead, load_attacker, save_attacker

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 1).astype(int)
    head = LogisticHead(5, 3).fit(x, y)
    save_attacker(tmp_path, head, {"kind": MODEL_KIND, "classes": ["a", "b", "c"]})
    loaded, config = load_attacker(tmp_path)
    assert np.allclose(loaded.predict_proba(x), head.predict_proba(x), atol=1e-6)
    assert np.mean(head.predict_proba(x).argmax(1) == y) > 0.8


def test_attacker_data_of_other_speakers_is_learned_from():
    # The label is coded by feature 0 on the tested speakers; the extra speakers code it the other way round
    # and outnumber them, so an attacker that really learns from the extra rows gets the tested ones wrong.
    rng = np.random.default_rng(3)
    n_tested, n_extra, dims = 24, 400, 6
    labels = ["a" if i % 2 else "b" for i in range(n_tested)]
    speakers = [f"s{i % 6}" for i in range(n_tested)]
    sign = np.array([1.0 if label == "a" else -1.0 for label in labels])
    x = rng.normal(size=(n_tested, dims)).astype(np.float32)
    x[:, 0] = 2.0 * sign + 0.3 * rng.normal(size=n_tested)
    extra_labels = ["a" if i % 2 else "b" for i in range(n_extra)] + ["c"] * 5  # a class not tested: ignored
    extra_sign = np.array([1.0 if label == "a" else -1.0 for label in extra_labels])
    extra_x = rng.normal(size=(len(extra_labels), dims)).astype(np.float32)
    extra_x[:, 0] = -2.0 * extra_sign
    spec = ProbeSpec("gender", ["a", "b"])
    valid = np.ones(n_tested, dtype=bool)
    alone, _, _ = run_attribute(spec, labels, speakers, x, x, valid, n_boot=0)
    helped, columns, _ = run_attribute(
        spec, labels, speakers, x, x, valid, n_boot=0, extra=(extra_labels, extra_x, extra_x)
    )
    assert alone["original"]["acc"] >= 75.0
    assert helped["original"]["acc"] <= 10.0 and helped["informed"]["acc"] <= 10.0
    assert helped["n"] == alone["n"] == n_tested and helped["extra_training"] == n_extra
    assert len(columns["gender.ignorant.pred"]) == n_tested
    speaker_spec = ProbeSpec("speaker", sorted(set(speakers)))  # closed-set speaker ID never uses other speakers
    same, _, _ = run_attribute(
        speaker_spec, speakers, speakers, x, x, valid, n_boot=0, extra=(extra_labels, extra_x, extra_x)
    )
    assert "extra_training" not in same
