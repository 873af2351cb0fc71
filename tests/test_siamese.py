"""Siamese features: contrastive loss, pair drawing, network shapes, training with resume, features out, probes."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from synth_audio import make_corpus

from anoncli.errors import AnoncliError
from anoncli.evaluation.feature_probes import evaluate_features
from anoncli.jobs.engine import AnonymizeConfig, run_anonymize
from anoncli.manifest.reader import read_manifest
from anoncli.methods import MethodOptions, create_method
from anoncli.models.siamese_net import SiameseNet, UtilityHead, contrastive_loss
from anoncli.scoring.metrics import binary_auc as roc_auc
from anoncli.scoring.probe import cross_validated_probe, make_folds
from anoncli.training import TrainOptions, get_trainer
from anoncli.training.siamese import draw_pairs


def test_contrastive_loss_on_hand_made_pairs():
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[0.0, 0.0], [0.6, 0.8], [0.3, 0.4], [3.0, 4.0]])  # distances 0, 1, 0.5, 5
    same = torch.tensor([0, 0, 0, 0])
    different = torch.tensor([1, 1, 1, 1])
    # same class: d²; different class: max(0, 1 − d)²
    assert torch.allclose(contrastive_loss(a, b, same), torch.tensor((0 + 1 + 0.25 + 25) / 4), atol=1e-5)
    assert torch.allclose(contrastive_loss(a, b, different), torch.tensor((1 + 0 + 0.25 + 0) / 4), atol=1e-5)
    assert torch.allclose(
        contrastive_loss(a, b, different, margin=2.0), torch.tensor((4 + 1 + 2.25 + 0) / 4), atol=1e-5
    )


def test_pairs_are_half_same_half_different():
    labels = np.array([0] * 10 + [1] * 3)
    a, b, diff = draw_pairs(labels, 200, torch.Generator().manual_seed(0))
    assert diff.sum() == 100
    assert np.all((labels[a] != labels[b]) == diff)


@pytest.mark.parametrize("groups", [1, 3, 5])
def test_network_gives_one_vector_per_utterance_whatever_its_length(groups):
    net = SiameseNet(groups, width=0.125).eval()
    with torch.no_grad():
        short, long = net(torch.randn(2, 8000)), net(torch.randn(1, 27000))
    assert short.shape == (2, net.feature_dim) and long.shape == (1, net.feature_dim)
    assert UtilityHead(net.feature_dim, 2)(short).shape == (2, 2)


def test_roc_auc_and_folds():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert roc_auc([1, 1], [0.2, 0.3]) is None
    folds = make_folds(["m", "m", "f", "f", "m", "f"], ["a", "a", "b", "c", "d", "c"], 5, 0)
    for fold in folds:  # whole speakers per fold
        assert len({("a", "a", "b", "c", "d", "c")[i] for i in fold}) >= 1
    assert sorted(np.concatenate(folds).tolist()) == list(range(6))
    spk_of = np.array(["a", "a", "b", "c", "d", "c"])
    assert all(len(set(spk_of[f]) & set(spk_of[np.setdiff1d(np.arange(6), f)])) == 0 for f in folds)


def test_attacker_finds_a_planted_speaker_cue_and_not_a_missing_one():
    rng = np.random.default_rng(0)
    speakers = np.repeat(["s1", "s2", "s3", "s4"], 30)
    noise = rng.standard_normal((120, 8)).astype(np.float32)
    cue = noise.copy()
    cue[:, 3] += np.repeat([0.0, 6.0, 12.0, 18.0], 30)  # a speaker-specific offset in one dimension
    found = cross_validated_probe(cue, speakers, seed=0, steps=200)
    blind = cross_validated_probe(noise, speakers, seed=0, steps=200)
    assert found["accuracy"] > 0.85 and found["chance"] == 0.25
    assert blind["accuracy"] < 0.5
    binary = cross_validated_probe(cue[:60], speakers[:60], seed=0, steps=200)
    assert binary["auc"] > 0.95


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("siamese")
    corpus = make_corpus(root / "corpus", per_speaker=4, duration_s=0.6)
    options = TrainOptions(
        corpus=corpus,
        out=root / "run",
        utility="gender",
        epochs=1,
        device="cpu",
        extra={
            "pairs_per_epoch": "8",
            "batch_size": "4",
            "head_epochs": "2",
            "width": "0.125",
            "groups": "2",
            "crop_s": "0.5",
            "val_speakers": "spk_c",
        },
    )
    return corpus, options


def test_training_writes_a_run_and_resumes(trained):
    corpus, options = trained
    summary = get_trainer("siamese")(options)
    run = options.out
    card = json.loads((run / "model.json").read_text())
    assert card["train_speakers"] == ["spk_a", "spk_b"] and card["held_out_speakers"] == ["spk_c"]
    assert 0.0 <= summary["utility_accuracy"] <= 1.0 and summary["n_held_out"] == 4
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    # one extractor epoch, then two head epochs, in one run of the loop
    assert state["method"] == "siamese" and state["epoch"] == 3 and state["trainer_config"]["head_epochs"] == 2
    assert state["classes"] == ["female", "male"] and state["train_speakers"] == ["spk_a", "spk_b"]
    log = pq.read_table(run / "log.parquet").to_pylist()
    assert [("loss" in r and r["loss"] is not None, "head_loss" in r and r["head_loss"] is not None) for r in log] == [
        (True, False),
        (False, True),
        (False, True),
    ]
    # The same command again: the run is complete and nothing is redone.
    get_trainer("siamese")(options)
    assert len(pq.read_table(run / "log.parquet").to_pylist()) == 3
    # More extractor epochs after the head learnt its features would leave the head stale: refused.
    options.epochs = 2
    with pytest.raises(AnoncliError, match="--overwrite"):
        get_trainer("siamese")(options)
    options.epochs = 1


def test_contrastive_and_ce_variants_both_train(trained, tmp_path):
    corpus, options = trained
    from dataclasses import replace

    ce = replace(options, out=tmp_path / "ce", extra={**options.extra, "loss": "ce"})
    summary = get_trainer("siamese")(ce)
    assert json.loads((tmp_path / "ce" / "model.json").read_text())["config"]["loss"] == "ce"
    assert "attacker_speaker_id_all_speakers" in summary


def test_anonymize_writes_features_and_evaluation_reads_them(trained, tmp_path):
    corpus, options = trained
    if not (options.out / "checkpoints" / "best.pt").exists():
        get_trainer("siamese")(options)
    method = create_method("siamese", MethodOptions(checkpoint=str(options.out)))
    vectors = [o.features for o in method.process([torch.randn(8000), torch.randn(12000)], [{}, {}])]
    assert [v.shape for v in vectors] == [(method.net.feature_dim,)] * 2
    out = tmp_path / "anon"
    run_anonymize(
        AnonymizeConfig(corpus=corpus, out=out, method="siamese", checkpoint=str(options.out), progress=False)
    )
    table = read_manifest(out)
    rows = table.to_pylist()
    assert all(r["status"] == "ok" for r in rows) and len(rows) == 12
    assert all((out / (r.get("features_path") or r["output_path"])).is_file() for r in rows)
    per_utt, summary = evaluate_features(corpus, out, table, ["utility:gender", "attacker:speaker"], seed=0)
    # training speakers are dropped: only spk_c (male) is left, so the gender probe has one class
    assert "skipped" in summary["utility:gender"]
    assert summary["attacker:speaker"].get("skipped")


def test_evaluate_features_scores_utility_and_attacker_per_gender(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(1)
    rows = []
    speakers = {"f1": "female", "f2": "female", "m1": "male", "m2": "male"}
    for k, (speaker, gender) in enumerate(speakers.items()):
        for i in range(12):
            vec = rng.standard_normal(6).astype(np.float32)
            vec[0] += 4.0 if gender == "female" else -4.0  # gender cue: the utility survives
            vec[1] += 4.0 * (k % 2)  # speaker cue within each gender
            rel = f"features/{speaker}_{i}.npy"
            (tmp_path / "features").mkdir(exist_ok=True)
            np.save(tmp_path / rel, vec)
            rows.append(
                {
                    "utt_id": f"{speaker}_{i}",
                    "output_path": rel,
                    "status": "ok",
                    "method": "siamese",
                    "speaker": speaker,
                    "gender": gender,
                }
            )
    (tmp_path / "run.json").write_text(json.dumps({"config": {"method_config": {"train_speakers": []}}}))
    per_utt, summary = evaluate_features(None, tmp_path, pd.DataFrame(rows), seed=0)
    assert summary["utility:gender"]["accuracy"] > 0.95
    attacker = summary["attacker:speaker|gender"]
    assert attacker["accuracy"] > 0.9 and attacker["chance"] == 0.5 and set(attacker["groups"]) == {"female", "male"}
    assert attacker["normalised"] < 20
    assert len(per_utt) == 2 * 48 and {r["probe"] for r in per_utt} == {"utility:gender", "attacker:speaker|gender"}
    # speakers named in run.json as training speakers are not evaluated
    (tmp_path / "run.json").write_text(json.dumps({"config": {"method_config": {"train_speakers": ["f1", "m1"]}}}))
    _, summary = evaluate_features(None, tmp_path, pd.DataFrame(rows), seed=0)
    assert summary["utility:gender"]["n"] == 24
    # all of them seen: nothing unseen to measure, said as such (the evaluate probe turns it into a note)
    from anoncli.evaluation.feature_probes import NoHeldOutUtterances

    seen = sorted({r["speaker"] for r in rows})
    (tmp_path / "run.json").write_text(json.dumps({"config": {"method_config": {"train_speakers": seen}}}))
    with pytest.raises(NoHeldOutUtterances, match="every utterance is of a speaker the model saw"):
        evaluate_features(None, tmp_path, pd.DataFrame(rows), seed=0)
