"""Writing a report folder: scores.parquet, trials.parquet, summary.json, report.html and PNG plots."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np

from anoncli.atomic import atomic_path, atomic_write_bytes, atomic_write_text

SUMMARY_NAME = "summary.json"
SCORES_NAME = "scores.parquet"
TRIALS_NAME = "trials.parquet"
HTML_NAME = "report.html"
PLOTS_DIR = "plots"


def _clean_json(value):
    if isinstance(value, dict):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return _clean_json(value.tolist())
    return value


def write_summary(report: Path, summary: dict) -> None:
    """Write `report/summary.json` atomically (numpy values and NaN made JSON-safe)."""
    atomic_write_text(report / SUMMARY_NAME, json.dumps(_clean_json(summary), indent=2))


def write_table(path: Path, columns: dict[str, list | np.ndarray]) -> None:
    """Write `columns` as one Parquet file at `path`, atomically."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            k: list(v) if isinstance(v, np.ndarray) and v.dtype == object and v.size < 1_000_000 else v
            for k, v in columns.items()
        }
    )
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


# ---------------------------------------------------------------- printed table


def table_rows(summary: dict) -> list[tuple[str, str, str, str]]:
    """(figure, original/OO, ignorant/OA, informed/AA) rows of the printed and HTML tables, from each probe."""
    from anoncli.evaluation.probes import table_rows as probe_rows

    return probe_rows(summary)


HEADERS = ("figure", "original (OO)", "ignorant attacker (OA)", "informed attacker (AA)")


def print_table(summary: dict, file=None) -> None:
    """Print the summary table and its notes with rich (to `file`, default stdout)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="anoncli evaluate", show_lines=False)
    for header in HEADERS:
        table.add_column(header, justify="left" if header == "figure" else "right")
    for row in table_rows(summary):
        table.add_row(*row)
    console = Console(file=file, width=max(120, Console().width))
    for protocol in summary.get("meta", {}).get("attackers", {}).values():
        console.print(f"attackers: {protocol['text']}", markup=False, highlight=False)
    console.print(table)
    for note in summary.get("notes", []):
        console.print(f"note: {note}", style="dim", markup=False, highlight=False)


# ---------------------------------------------------------------- plots


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def make_plots(
    summary: dict, trials: dict | None, per_speaker: dict, confusions: dict, roc_inputs: dict | None = None
) -> dict[str, bytes]:
    """PNG plots as {name: bytes}: privacy-utility plane, ASV DET and per-speaker EERs, attacker ROC, confusion matrices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from anoncli.scoring.metrics import roc_curve_points

    plots = {}
    # Privacy–utility plane (GenGAN Fig. 4 style): privacy right, utility up.
    privacy_axes = []
    if "asv" in summary:
        privacy_axes.append(
            ("ASV eer (normalised)", lambda s, side: s["asv"].get("OO" if side == "O" else "OA", {}).get("eer"))
        )
    gender_like = next((k for k, v in summary.items() if isinstance(v, dict) and "gr" in v.get("ignorant", {})), None)
    if gender_like:
        privacy_axes.append(
            (f"{gender_like} gr", lambda s, side: s[gender_like]["original" if side == "O" else "ignorant"]["gr"])
        )
    if summary.get("asr", {}).get("original"):
        utility = ("Aw = 100 − WER", lambda s, side: s["asr"]["original" if side == "O" else "anonymized"]["Aw"])
    elif "signal" in summary:
        utility = (
            "100 × STOI",
            lambda s, side: 100.0 if side == "O" else 100.0 * (s["signal"].get("stoi") or float("nan")),
        )
    else:
        utility = None
    if privacy_axes and utility:
        fig, axes = plt.subplots(1, len(privacy_axes), figsize=(5 * len(privacy_axes), 4.2), squeeze=False)
        for ax, (xlabel, getter) in zip(axes[0], privacy_axes):
            for side, label, marker in (("O", "original", "o"), ("A", "anonymized", "s")):
                x, y = getter(summary, side), utility[1](summary, side)
                if x is not None and y is not None and math.isfinite(x) and math.isfinite(y):
                    ax.scatter([x], [y], s=80, marker=marker, label=label, zorder=3)
                    ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 6))
            ax.scatter([100], [100], marker="*", s=150, color="gold", edgecolor="k", label="ideal", zorder=3)
            ax.set_xlim(-5, 105)
            ax.set_ylim(-5, 105)
            ax.set_xlabel(f"privacy: {xlabel}")
            ax.set_ylabel(f"utility: {utility[0]}")
            ax.grid(alpha=0.3)
            ax.legend(loc="lower left")
        fig.suptitle("privacy–utility trade-off")
        plots["privacy_utility"] = _png(fig)
    if trials:
        from scipy.stats import norm

        fig, (det, hist) = plt.subplots(1, 2, figsize=(10, 4.2))
        for cond, (target, nontarget) in trials.items():
            fa, miss = roc_curve_points(target, nontarget)
            clip = lambda p: np.clip(p, 1e-4, 1 - 1e-4)  # noqa: E731
            eer = summary["asv"][cond]["EER"]
            det.plot(norm.ppf(clip(fa)), norm.ppf(clip(miss)), label=f"{cond} (EER {eer:.1f} %)")
            hist.hist(target, bins=30, alpha=0.4, density=True, label=f"{cond} target")
            hist.hist(nontarget, bins=30, alpha=0.4, density=True, histtype="step", label=f"{cond} non-target")
        ticks = [0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9]
        det.set_xticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
        det.set_yticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
        limits = norm.ppf([0.005, 0.95])
        det.plot(limits, limits, color="grey", lw=0.5)
        det.set_xlim(*limits)
        det.set_ylim(*limits)
        det.set_xlabel("false-alarm rate %")
        det.set_ylabel("miss rate %")
        det.set_title("DET curves")
        det.legend()
        hist.set_xlabel("cosine score")
        hist.set_title("trial score distributions")
        hist.legend(fontsize=7)
        plots["asv_det"] = _png(fig)
    if per_speaker:
        speakers = sorted({s for values in per_speaker.values() for s in values})
        fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(speakers) + 3), 3.8))
        width = 0.8 / max(1, len(per_speaker))
        for k, (cond, values) in enumerate(per_speaker.items()):
            ax.bar(np.arange(len(speakers)) + k * width, [values.get(s, np.nan) for s in speakers], width, label=cond)
        ax.set_xticks(np.arange(len(speakers)) + 0.4 - width / 2, speakers, rotation=90 if len(speakers) > 12 else 0)
        ax.set_ylabel("EER %")
        ax.set_title("per-speaker EER (higher = more private)")
        ax.legend()
        plots["asv_per_speaker"] = _png(fig)
    if roc_inputs:
        from sklearn.metrics import roc_curve

        fig, axes = plt.subplots(1, len(roc_inputs), figsize=(4.2 * len(roc_inputs), 4), squeeze=False)
        for ax, (column, by_attacker) in zip(axes[0], roc_inputs.items()):
            for attacker, (is_positive, score) in by_attacker.items():
                if is_positive.any() and (~is_positive).any():
                    fpr, tpr, _ = roc_curve(is_positive, score)
                    auc = summary[column][attacker].get("auc")
                    ax.plot(fpr, tpr, label=f"{attacker} (AUC {auc:.2f})")
            ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
            ax.set_xlabel("false-positive rate")
            ax.set_ylabel("true-positive rate")
            ax.set_title(f"{column} attackers: ROC")
            ax.legend(loc="lower right")
        fig.tight_layout()
        plots["attacker_roc"] = _png(fig)
    for column, by_attacker in confusions.items():
        classes = summary[column]["classes"]
        names = [a for a in ("original", "ignorant", "informed") if a in by_attacker]
        size = max(3.2, 0.35 * len(classes) + 2)
        fig, axes = plt.subplots(1, len(names), figsize=(size * len(names), size), squeeze=False)
        for ax, attacker in zip(axes[0], names):
            matrix = by_attacker[attacker].astype(float)
            rows = matrix.sum(axis=1, keepdims=True)
            ax.imshow(np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0), vmin=0, vmax=1, cmap="Blues")
            if len(classes) <= 15:
                ax.set_xticks(range(len(classes)), classes, rotation=90)
                ax.set_yticks(range(len(classes)), classes)
                for (r, c), count in np.ndenumerate(by_attacker[attacker]):
                    if count:
                        ax.text(c, r, str(count), ha="center", va="center", fontsize=7)
            acc = summary[column][attacker]["acc"]
            ax.set_title(f"{attacker} (acc {acc:.1f} %)")
            ax.set_xlabel("predicted")
        axes[0][0].set_ylabel("true")
        fig.suptitle(f"{column}: confusion matrices")
        fig.tight_layout()
        plots[f"confusion_{column}"] = _png(fig)
    return plots


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and bool(np.isfinite(value))


def gate_html(gate: dict | None) -> str:
    """The report's Gate section from summary.json meta.gate: passed/failed, and per condition the measured
    value, whether it held and the attacker protocol it was checked under; "" when no --gate was given."""
    if not gate:
        return ""
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(cell))}</td>"
            for cell in (
                cond["condition"],
                cond["figure"],
                f"{cond['measured']:.4g}" if _finite(cond.get("measured")) else "not measured",
                "pass" if cond["passed"] else "FAIL",
                cond.get("protocol") or "",
            )
        )
        + "</tr>"
        for cond in gate.get("conditions", [])
    )
    head = "".join(f"<th>{h}</th>" for h in ("condition", "figure", "measured", "result", "protocol"))
    verdict = "passed" if gate.get("passed") else "failed"
    return (
        f"<h2>Gate: {verdict}</h2><p>unreadable pairs: {gate.get('unreadable_pairs', 0)} "
        f"(--allow-missing {gate.get('allow_missing', 0)})</p><table><tr>{head}</tr>{rows}</table>\n"
    )


def write_html(report: Path, summary: dict, plots: dict[str, bytes]) -> None:
    """Write `report.html` (attacker protocols, gate, table, notes, embedded plots, timings) and the plots as `plots/<name>.png`, atomically."""
    rows = table_rows(summary)
    body = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in HEADERS) + "</tr>"]
    for row in rows:
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    body.append("</table>")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in summary.get("notes", []))
    images = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
        f"<figcaption>{html.escape(name.replace('_', ' '))}</figcaption></figure>"
        for name, data in plots.items()
    )
    meta = summary.get("meta", {})
    protocols = "".join(f"<li>{html.escape(protocol['text'])}</li>" for protocol in meta.get("attackers", {}).values())
    attackers = f"<h2>Attackers</h2><ul>{protocols}</ul>\n" if protocols else ""
    timings = summary.get("timings_s", {})
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>anoncli evaluation report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
figure{{display:inline-block;margin:1em}}img{{max-width:100%}}code{{background:#f4f4f4}}</style></head><body>
<h1>anoncli evaluation report</h1>
<p>Original: <code>{html.escape(str(meta.get("original", "")))}</code><br>
Anonymized: <code>{html.escape(str(meta.get("anonymized", "")))}</code> ({html.escape(", ".join(meta.get("methods", [])) or "unknown method")})<br>
Utterances evaluated: {meta.get("n_pairs", "")}; anoncli {html.escape(str(meta.get("anoncli_version", "")))}; seed {meta.get("seed", "")}.
Normalised scores (eer, gr, normalised): 100 = attacker at chance (private), 0 = attacker perfect.
Brackets: 95 % bootstrap intervals over speakers.</p>
{attackers}{gate_html(meta.get("gate"))}{"".join(body)}
<h2>Notes</h2><ul>{notes or "<li>none</li>"}</ul>
<h2>Plots</h2>{images}
<h2>Timings (s)</h2><p>{html.escape(", ".join(f"{k}: {v:.1f}" for k, v in timings.items()))}</p>
</body></html>
"""
    atomic_write_text(report / HTML_NAME, page)
    (report / PLOTS_DIR).mkdir(exist_ok=True)
    for name, data in plots.items():
        atomic_write_bytes(report / PLOTS_DIR / f"{name}.png", data)


def is_report_like(folder: Path) -> bool:
    """Whether `folder` holds a summary.json or scores.parquet (what --overwrite may replace)."""
    return (Path(folder) / SUMMARY_NAME).is_file() or (Path(folder) / SCORES_NAME).is_file()
