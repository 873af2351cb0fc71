"""Progress in logs: plain lines, one per few percent or per epoch, never a carriage-return redraw."""

from __future__ import annotations

import io

from anoncli.progress import PlainProgress, progress_bar


def test_plain_lines_every_five_percent_without_redraws():
    sink = io.StringIO()
    bar = PlainProgress(total=200, desc="anonymize", unit="file", file=sink)
    for _ in range(200):
        bar.update(1)
    bar.close()
    text = sink.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert 19 <= len(lines) <= 21  # 5 %, 10 %, ... 95 %, then the final line
    assert lines[0].startswith("anonymize: 10/200 file (5%)")
    assert lines[-1].startswith("anonymize: 200/200 file (100%)") and lines[-1].endswith("done")
    stopped = io.StringIO()  # a job stopped midway (Ctrl-C, SIGTERM) does not end its line with "done"
    bar = PlainProgress(total=200, desc="anonymize", unit="file", file=stopped)
    bar.update(30)
    bar.close()
    assert stopped.getvalue().splitlines()[-1].endswith("stopped")


def test_one_line_per_epoch_and_iteration():
    sink = io.StringIO()
    for epoch in range(3):
        bar = PlainProgress(range(50), desc=f"epoch {epoch}", file=sink, step_percent=100)
        bar.set_postfix(loss="0.5")
        assert sum(1 for _ in bar) == 50
    lines = sink.getvalue().splitlines()
    assert len(lines) == 3
    assert all("50/50" in line and "loss=0.5" in line for line in lines)


def test_disabled_prints_nothing_and_progress_bar_is_plain_off_a_terminal(capsys):
    quiet = PlainProgress(total=10, file=io.StringIO(), disable=True)
    quiet.update(10)
    quiet.close()
    assert quiet.file.getvalue() == ""
    bar = progress_bar(total=4, desc="x")  # pytest's stderr is not a terminal
    assert isinstance(bar, PlainProgress)
    bar.update(4)
    bar.close()
    assert capsys.readouterr().err.strip().startswith("x: 4/4")
