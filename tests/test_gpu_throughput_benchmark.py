"""The GPU throughput benchmark runs end to end on the CPU (how it is checked before a GPU session)."""

import importlib.util
from pathlib import Path

from synth_audio import make_corpus

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_throughput.py"


def test_gpu_throughput_script_measures_each_batch_size_and_the_whole_job(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    corpus = make_corpus(tmp_path / "c", per_speaker=2, duration_s=1.0)
    results = module.main(
        [
            "--corpus",
            str(corpus),
            "--methods",
            "mcadams",
            "--batch-seconds",
            "1.5,100",
            "--limit-seconds",
            "5",
            "--device",
            "cpu",
            "--jobs",
            "1",
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    model = results["methods"]["mcadams"]["model"]
    assert [row["batch_seconds"] for row in model["rows"]] == [1.5, 100.0]
    assert [row["batches"] for row in model["rows"]] == [3, 1]  # 5 one-second files: 2 + 2 + 1, then all in one
    assert all(row["x_realtime"] > 0 and row["audio_s"] >= 5 for row in model["rows"])
    assert model["best_batch_seconds"] in (1.5, 100.0)
    job = results["methods"]["mcadams"]["job"]
    assert "error" not in job and job["audio_s"] == 6.0 and job["x_realtime"] > 0  # the whole corpus: 6 files
    assert (tmp_path / "r.json").is_file()
