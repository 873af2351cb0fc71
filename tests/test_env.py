"""`anoncli env`: versions, device, models, and a health check that really exercises each backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from anoncli.cli import env as env_command
from anoncli.cli.app import app
from anoncli.errors import EXIT_UNHEALTHY


def test_env_json_reports_every_backend_healthy_on_this_install(tmp_path):
    environ = {**os.environ, "ANONCLI_MODELS": str(tmp_path / "models")}
    proc = subprocess.run(
        [sys.executable, "-m", "anoncli", "env", "--format", "json"],
        capture_output=True,
        text=True,
        env=environ,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    names = {check["name"] for check in report["checks"]}
    assert names == set(env_command.CHECKS)
    broken = [c for c in report["checks"] if not c["ok"]]
    assert broken == [], broken
    assert report["healthy"] is True
    for package in (
        "torch",
        "torchaudio",
        "numpy",
        "numba",
        "soundfile",
        "pyarrow",
        "speechbrain",
        "resemblyzer",
        "pocketsphinx",
        "pyworld",
        "dask",
    ):
        assert report["packages"][package], package
    assert set(report["device"]) >= {"cuda_available", "gpus"}
    assert report["model_store"] == str(tmp_path / "models")


def test_broken_backend_exits_non_zero_with_one_line_each(monkeypatch):
    def broken() -> str:
        raise OSError("Could not load this library: libtorchaudio.so\nsecond line")

    monkeypatch.setattr(
        env_command, "CHECKS", {"torchaudio": (broken, "resampling"), "pyarrow": env_command.CHECKS["pyarrow"]}
    )
    result = CliRunner().invoke(app, ["env", "--format", "json"])
    assert result.exit_code == EXIT_UNHEALTHY
    report = json.loads(result.stdout)
    assert [c["ok"] for c in report["checks"]] == [False, True]
    lines = [line for line in result.stderr.splitlines() if line]
    assert len(lines) == 1
    assert "torchaudio" in lines[0] and "libtorchaudio.so" in lines[0] and "second line" not in lines[0]


def test_help_imports_no_torch():
    code = (
        "import sys\nfrom anoncli.cli.app import main\nsys.argv = ['anoncli', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"
    )
    for argv in (["--help"], ["anonymize", "--help"], ["evaluate", "--help"], ["train", "--help"], ["env", "--help"]):
        proc = subprocess.run(
            [sys.executable, "-c", code.replace("['anoncli', '--help']", repr(["anoncli", *argv]))],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.stdout.strip().splitlines()[-1] == "False", (argv, proc.stdout[-300:], proc.stderr[-300:])


def test_a_damaged_local_model_is_a_failed_check_whose_message_never_suggests_unsafe_loading(tmp_path, monkeypatch):
    from anoncli import modelstore
    from anoncli.cli.env import _local_model_checks

    monkeypatch.setenv("ANONCLI_MODELS", str(tmp_path / "store"))
    (tmp_path / "store" / "psegan").mkdir(parents=True)
    (tmp_path / "store" / "psegan" / "model.pt").write_bytes(b"not a checkpoint")
    checks = _local_model_checks(modelstore.list_models())
    assert [(c["name"], c["ok"]) for c in checks] == [("model:psegan", False)]
    assert "cannot load checkpoint" in checks[0]["detail"] and "weights_only" not in checks[0]["detail"]
    import torch  # a readable file of the wrong kind, in the folder of another method

    torch.save({"method": "psegan", "models": {}}, tmp_path / "store" / "psegan" / "model.pt")
    (tmp_path / "store" / "gengan").mkdir()
    torch.save({"method": "psegan", "models": {}}, tmp_path / "store" / "gengan" / "model.pt")
    checks = {c["name"]: c for c in _local_model_checks(modelstore.list_models())}
    assert checks["model:psegan"]["ok"] and not checks["model:gengan"]["ok"]
    assert "a psegan checkpoint, not a gengan one" in checks["model:gengan"]["detail"]
