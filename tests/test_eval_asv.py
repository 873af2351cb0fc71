"""ASV trials: seeded enrolment split, Kaldi trials files, OO/OA/AA scoring on planted embeddings."""

import numpy as np
import pytest

from anoncli.errors import InputError
from anoncli.evaluation import asv
from anoncli.evaluation.linkability import run_linkability


def planted(n_speakers=5, per_speaker=8, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_speakers, 32))
    speakers = [f"s{k}" for k in range(n_speakers) for _ in range(per_speaker)]
    emb = np.repeat(centres, per_speaker, axis=0) + noise * rng.normal(size=(len(speakers), 32))
    return speakers, emb / np.linalg.norm(emb, axis=1, keepdims=True)


def test_enrolment_split_is_seeded_and_disjoint():
    speakers, _ = planted()
    valid = np.ones(len(speakers), bool)
    a, b = asv.split_enrolment(speakers, valid, seed=1), asv.split_enrolment(speakers, valid, seed=1)
    assert a.trials == b.trials
    enrolled = {int(i) for idx in a.models.values() for i in idx}
    tested = {i for _, i, _ in a.trials}
    assert enrolled.isdisjoint(tested) and len(enrolled | tested) == len(speakers)
    targets = [t for t in a.trials if t[2]]
    assert len(a.trials) == len(targets) * 5  # one target + 4 non-target models per trial utterance
    with pytest.raises(InputError):
        asv.split_enrolment(["only"] * 4, np.ones(4, bool), 0)


def test_conditions_see_the_anonymization():
    speakers, original = planted()
    rng = np.random.default_rng(3)
    anonymized = rng.normal(size=original.shape)  # identity destroyed
    anonymized /= np.linalg.norm(anonymized, axis=1, keepdims=True)
    trials = asv.split_enrolment(speakers, np.ones(len(speakers), bool), 0)
    ids = [f"u{i}" for i in range(len(speakers))]
    summary, columns, per_utt, per_speaker = asv.run_asv(trials, original, anonymized, speakers, ids, n_boot=20)
    assert summary["OO"]["EER"] < 5.0
    assert summary["OA"]["EER"] > 25.0 and summary["AA"]["EER"] > 25.0
    assert set(columns["condition"]) == {"OO", "OA", "AA"} and len(columns["score"]) == 3 * len(trials.trials)
    assert np.isnan(per_utt["asv.OA.score"]).sum() == sum(len(v) for v in trials.models.values())
    assert set(per_speaker["OO"]) == set(speakers)
    link, link_cols, _ = run_linkability(original, anonymized, speakers, np.ones(len(speakers), bool))
    assert link["G_VD"] < -3.0 and abs(link["cosine_mean"]) < 0.3


def test_kaldi_trials_file(tmp_path):
    speakers, emb = planted(n_speakers=3, per_speaker=4)
    ids = [f"wav/u{i}" for i in range(len(speakers))]
    lines = ["s0 u4 nontarget", "s0 u1 target", "s1 u5 target", "s1 u1 nontarget", "wav/u8 u9 target", ""]
    path = tmp_path / "trials"
    path.write_text("\n".join(lines))
    trials = asv.read_kaldi_trials(path, ids, speakers)
    assert trials.models["s0"].tolist() == [0, 2, 3]  # s0's utterances that are never a trial
    assert trials.models["wav/u8"].tolist() == [8]  # an utterance id as model
    assert trials.trials[1] == ("s0", 1, True)
    summary, *_ = asv.run_asv(trials, emb, emb, speakers, ids, conditions=("OO",), n_boot=0)
    assert summary["OO"]["n_target"] == 3 and summary["OO"]["n_nontarget"] == 2
    path.write_text("s0 u1 maybe\n")
    with pytest.raises(InputError, match="line 1"):
        asv.read_kaldi_trials(path, ids, speakers)
    path.write_text("s0 nosuch target\n")
    with pytest.raises(InputError, match="unknown utterance"):
        asv.read_kaldi_trials(path, ids, speakers)
