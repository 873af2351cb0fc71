"""The copy-synthesis benchmark script runs end to end on a tiny synthetic corpus."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "vocoder_copy_synthesis.py"


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("vocoder_copy_synthesis", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_corpus(root: Path, seconds: list[float], rate: int = 16000) -> Path:
    root.mkdir()
    rows = ["file_name,speaker"]
    for i, length in enumerate(seconds):
        t = np.arange(int(length * rate)) / rate
        wave = (
            sum(np.sin(2 * np.pi * k * 140 * t) / k for k in range(1, 12))
            * 0.1
            * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
        )
        sf.write(root / f"u{i}.wav", wave.astype(np.float32), rate)
        rows.append(f"u{i}.wav,s{i % 2}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def test_phase_copy_synthesis_scores_one_and_pools_short_files(tmp_path, benchmark, capsys):
    corpus = make_corpus(tmp_path / "c", [2.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    assert benchmark.main([str(corpus), "--vocoder", "phase"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["files"] == 8 and result["pooled_files"] == 7
    # one long file + the 3.5 s of short files in one pool (a short remainder joins it)
    assert result["stoi_units"] == 2
    assert result["stoi_min"] > 0.99 and result["mel_l1"] < 1e-3


def test_warp_change_is_delivered_by_griffinlim(tmp_path, benchmark, capsys):
    corpus = make_corpus(tmp_path / "c", [1.6, 1.6])
    benchmark.main([str(corpus), "--vocoder", "griffinlim", "--option", "n_iter=16", "--change", "warp=1.1"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["change"] == "warp=1.1" and result["mel_l1"] < 0.2


def test_warp_mel_moves_bands_up(benchmark):
    logmel = torch.full((80, 3), -5.0)
    logmel[20] = 0.0
    warped = benchmark.warp_mel(logmel, 1.5)
    assert int(warped[:, 0].argmax()) == 30
