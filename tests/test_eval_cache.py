"""`anoncli evaluate` with a cache folder that cannot be written: a warning naming the cache, and a whole report."""

import json

import pytest
from eval_helpers import corpus_and_copy
from typer.testing import CliRunner

from anoncli.cli.app import app


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    return corpus_and_copy(tmp_path_factory.mktemp("cache"), duration_s=0.6)


@pytest.mark.parametrize("where", ["home", "cache_var"])
def test_unwritable_cache_is_a_warning(corpora, tmp_path, monkeypatch, where):
    original, anonymized = corpora
    if where == "home":  # HOME=/proc/nohome: ~/.cache cannot be created, even by root
        monkeypatch.delenv("ANONCLI_CACHE", raising=False)
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        monkeypatch.setenv("HOME", "/proc/nohome")
        cache = "/proc/nohome/.cache/anoncli/evaluation/"
    else:  # ANONCLI_CACHE below a plain file
        (tmp_path / "plain").write_text("a file, not a folder\n")
        monkeypatch.setenv("ANONCLI_CACHE", str(tmp_path / "plain" / "cache"))
        cache = str(tmp_path / "plain" / "cache" / "evaluation") + "/"
    out = tmp_path / "rep"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(original),
            str(anonymized),
            "--out",
            str(out),
            "--probes",
            "signal",
            "--bootstrap",
            "0",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"anoncli: warning: cache {cache}original-" in result.stderr
    assert "cannot write" in result.stderr and "not cached" in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["meta"]["n_pairs"] == 6 and summary["signal"]["stoi"] > 0.99
    assert (out / "report.html").is_file()
