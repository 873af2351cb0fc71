"""The package's layers hold: every import goes down (pyproject.toml [tool.importlinter], docs/architecture.md).

The same check as running `lint-imports` in the repository root, so the test
suite (and CI, which runs it) fails on an import against the layer order.
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("importlinter", reason="import-linter is in the dev extra: pip install -e '.[dev]'")


def test_import_contracts_are_kept(capsys):
    from importlinter.cli import lint_imports

    exit_code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert exit_code == 0, report
    assert "broken" not in report.split("Contracts:")[-1].replace("0 broken", "")


def test_imports_inside_functions_are_part_of_the_checked_graph():
    """The contract would be toothless if lazy imports were invisible: the engine's executor
    import sits inside a function, and the graph the contracts check must hold it."""
    import grimp

    graph = grimp.build_graph("anoncli", cache_dir=None)
    assert graph.direct_import_exists(importer="anoncli.jobs.engine", imported="anoncli.parallel")
