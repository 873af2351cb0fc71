"""The speaker attacker that enrols on a fixed amount of speech per speaker (Siamese privacy figure)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from anoncli.evaluation.feature_probes import evaluate_features
from anoncli.scoring.probe import cross_validated_probe, enrolment_split


def _speakers(durations_by_speaker: dict[str, list[float]]) -> tuple[list[str], list[float]]:
    speakers, durations = [], []
    for speaker, values in durations_by_speaker.items():
        speakers += [speaker] * len(values)
        durations += values
    return speakers, durations


def test_enrolment_split_takes_about_enrol_s_per_speaker_and_tests_the_rest():
    speakers, durations = _speakers({"a": [10.0] * 12, "b": [4.0] * 30, "c": [25.0, 30.0], "d": [8.0]})
    enrol, test = enrolment_split(speakers, durations, 60.0, seed=3)
    speakers, durations = np.asarray(speakers), np.asarray(durations)
    assert sorted(np.concatenate([enrol, test]).tolist()) == list(range(len(speakers)))
    enrolled = {s: durations[enrol][speakers[enrol] == s].sum() for s in "abcd"}
    assert enrolled["a"] == 60.0 and enrolled["b"] == 60.0  # the first draws that reach 60 s
    assert (speakers[test] == "a").sum() == 6 and (speakers[test] == "b").sum() == 15
    assert (speakers[test] == "c").sum() == 1  # too little speech: all but one item enrol
    assert "d" not in set(speakers[test]) and enrolled["d"] == 8.0  # a single item only enrols
    again = enrolment_split(speakers, durations, 60.0, seed=3)
    other = enrolment_split(speakers, durations, 60.0, seed=4)
    assert np.array_equal(again[1], test) and not np.array_equal(other[1], test)


@pytest.mark.parametrize("durations", [[1.0, np.nan, 2.0], [1.0, -1.0, 2.0]])
def test_enrolment_split_refuses_unusable_durations(durations):
    with pytest.raises(ValueError, match="duration"):
        enrolment_split(["a", "a", "b"], durations, 60.0)


def test_probe_on_given_folds_scores_only_the_test_items():
    rng = np.random.default_rng(0)
    speakers = np.repeat(["a", "b", "c"], 10)
    centres = {"a": 0.0, "b": 4.0, "c": -4.0}
    x = np.stack([rng.normal(centres[s], 0.3, 8) for s in speakers]).astype(np.float32)
    enrol, test = enrolment_split(speakers, np.full(30, 3.0), 15.0, seed=0)
    result = cross_validated_probe(x, speakers, folds=[test], seed=0, models=("linear",))
    assert result["index"].tolist() == test.tolist() and result["n"] == len(test) == 15
    assert result["label"] == speakers[test].tolist()
    assert result["accuracy"] == 1.0
    # without folds every item is scored, as before
    assert cross_validated_probe(x, speakers, seed=0, models=("linear",))["n"] == 30


def _feature_run(tmp_path, spread: float):
    """A features-only output folder: 2 genders x 3 speakers x 12 utterances of 4 s; `spread` sets how far
    apart the speakers of one gender are against unit noise per utterance."""
    rng = np.random.default_rng(1)
    rows = []
    for gender, offset in (("female", 3.0), ("male", -3.0)):
        for k in range(3):
            centre = np.full(16, offset) + spread * rng.normal(size=16)
            for j in range(12):
                rel = f"features/{gender}{k}_{j}.npy"
                (tmp_path / "features").mkdir(exist_ok=True)
                np.save(tmp_path / rel, (centre + rng.normal(size=16)).astype(np.float32))
                rows.append(
                    {
                        "utt_id": f"{gender}{k}_{j:02d}",
                        "features_path": rel,
                        "output_path": None,
                        "speaker": f"{gender}{k}",
                        "gender": gender,
                        "duration_s": 4.0,
                        "method": "siamese",
                        "status": "ok",
                    }
                )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("spread, strong", [(3.0, True), (0.0, False)])
def test_within_gender_attacker_enrols_on_enrol_s_and_is_scored_on_the_rest(tmp_path, spread, strong):
    table = _feature_run(tmp_path, spread)
    probe = "attacker:speaker|gender"
    rows, summary = evaluate_features(None, tmp_path, table, probes=[probe], enrol_s=20.0, seed=0)
    entry = summary[probe]
    # 20 s of 4 s items: 5 enrol, 7 tested per speaker, 6 speakers
    assert entry["n"] == 42 and len(rows) == 42
    assert {g["n"] for g in entry["groups"].values()} == {21}
    assert entry["groups"]["female"]["chance"] == pytest.approx(1 / 3)
    assert all(g["folds"] == "enrolment 20 s per speaker" for g in entry["groups"].values())
    assert {int(r["utt_id"][-2:]) for r in rows} != set(range(12))
    if strong:
        assert entry["accuracy"] > 0.9
    else:
        assert entry["accuracy"] < 0.6


def test_enrolment_without_durations_is_skipped_with_the_reason(tmp_path):
    table = _feature_run(tmp_path, 3.0).drop(columns=["duration_s"])
    _, summary = evaluate_features(None, tmp_path, table, probes=["attacker:speaker|gender"], enrol_s=20.0)
    groups = summary["attacker:speaker|gender"]["groups"]
    assert all("duration_s" in g["skipped"] for g in groups.values())
