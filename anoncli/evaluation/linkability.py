"""Linkability: how close each anonymized utterance stays to its original, and voice distinctiveness.

* link cosine: cosine between the speaker embeddings of an utterance and of
  its anonymized version (1 = the same voice; lower is more private);
* G_VD (VoicePrivacy): `10·log10(D_diag(S_aa) / D_diag(S_oo))`, where S is the
  speaker×speaker voice-similarity matrix (mean cosine between utterances of
  speaker i and of speaker j, self-pairs excluded) and D_diag the absolute
  difference between its mean diagonal and mean off-diagonal entries. 0 dB:
  speakers stay as distinguishable as before; negative: voices merge.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from anoncli.errors import warn
from anoncli.evaluation.probes import Probe, ProbeContext, ProbeResult, Row, fmt

ZERO = 1e-12  # a D_diag this small is rounding: the speakers are not distinguishable (G_VD would be below −100 dB)
# An output this close to its original (link cosine) is the original voice: the method handed the input back.
PASSTHROUGH_COSINE = 0.999


def passthrough(cosines) -> np.ndarray:
    """(N,) bool: the link cosines at or above PASSTHROUGH_COSINE (a NaN one is not)."""
    cosines = np.asarray(cosines, dtype=np.float64)
    return np.isfinite(cosines) & (np.nan_to_num(cosines, nan=0.0) >= PASSTHROUGH_COSINE)


def link_cosines(original: np.ndarray, anonymized: np.ndarray) -> np.ndarray:
    """Row-wise cosines of two (N, D) L2-normalised embedding arrays: (N,) float64."""
    return np.einsum("ij,ij->i", original, anonymized).astype(np.float64)


def similarity_matrix(a: np.ndarray, b: np.ndarray, speakers: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Mean cosine between utterances of speaker i (from `a`) and of speaker j (from `b`)."""
    names = sorted(set(speakers.tolist()))
    scores = a @ b.T
    same_utterance = np.eye(len(a), dtype=bool)
    matrix = np.zeros((len(names), len(names)))
    members = [np.flatnonzero(speakers == s) for s in names]
    for i, rows in enumerate(members):
        for j, cols in enumerate(members):
            block = scores[np.ix_(rows, cols)]
            mask = ~same_utterance[np.ix_(rows, cols)]
            matrix[i, j] = block[mask].mean() if mask.any() else np.nan
    return matrix, names


def diagonal_dominance(matrix: np.ndarray) -> float:
    """D_diag of a speaker similarity matrix: |mean of the diagonal - mean off the diagonal| (NaNs ignored).

    Noé et al., "Speech pseudonymisation assessment using voice similarity matrices", Interspeech 2020.
    """
    n = matrix.shape[0]
    off = ~np.eye(n, dtype=bool)
    return float(abs(np.nanmean(np.diag(matrix)) - np.nanmean(matrix[off])))


def run_linkability(original: np.ndarray, anonymized: np.ndarray, speakers: list[str | None], valid: np.ndarray):
    """Returns (summary, per-utterance columns, matrices for the report).

    G_VD is NaN where it cannot be computed, and then `summary["G_VD_note"]`
    says why: fewer than 2 speakers, no speaker with 2 scored utterances (the
    diagonal of S holds same-speaker pairs of different utterances), or a
    D_diag of 0 (no log ratio).
    """
    cos = np.full(len(valid), np.nan)
    cos[valid] = link_cosines(original[valid], anonymized[valid])
    summary = {
        "cosine_mean": float(np.mean(cos[valid])) if valid.any() else float("nan"),
        "cosine_median": float(np.median(cos[valid])) if valid.any() else float("nan"),
    }
    keep = valid & np.array([s is not None for s in speakers])
    spk = np.array([s for s, k in zip(speakers, keep) if k])
    counts = Counter(spk.tolist())
    matrices, why = {}, None
    if len(counts) < 2:
        why = f"needs 2 or more speakers with a scored pair, {len(counts)} here"
    elif max(counts.values()) < 2:
        why = (
            "needs a speaker with 2 or more scored utterances (S's diagonal compares different utterances of "
            f"one speaker); each of the {len(counts)} speakers has one"
        )
    else:
        s_oo, names = similarity_matrix(original[keep], original[keep], spk)
        s_aa, _ = similarity_matrix(anonymized[keep], anonymized[keep], spk)
        d_oo, d_aa = diagonal_dominance(s_oo), diagonal_dominance(s_aa)
        summary["D_diag_oo"], summary["D_diag_aa"] = d_oo, d_aa
        matrices = {"S_oo": s_oo, "S_aa": s_aa, "speakers": names}
        if d_oo > ZERO and d_aa > ZERO:
            summary["G_VD"] = float(10 * np.log10(d_aa / d_oo))
        else:
            why = (
                "D_diag_oo is 0: the original speakers are not distinguishable"
                if d_oo <= ZERO
                else "D_diag_aa is 0: no speaker is distinguishable after anonymization (G_VD → −∞)"
            )
    if why:
        summary["G_VD"], summary["G_VD_note"] = float("nan"), why
    return summary, {"link.cosine": cos}, matrices


def passthrough_note(summary: dict, cosines: np.ndarray, utt_ids: list[str]) -> list[str]:
    """Count the outputs that keep the original voice into `summary` (`passthrough`, `passthrough_utts`);
    when there are any, warn on stderr and return the report's note naming them."""
    flagged = [utt for utt, hit in zip(utt_ids, passthrough(cosines)) if hit]
    summary["passthrough"] = len(flagged)
    if not flagged:
        return []
    summary["passthrough_utts"] = flagged
    more = f"; and {len(flagged) - 3} more" if len(flagged) > 3 else ""
    note = (
        f"linkability: {len(flagged)} of {len(utt_ids)} outputs keep the original voice (link cosine ≥ "
        f"{PASSTHROUGH_COSINE}: not anonymized; linkability.passthrough_utts): {'; '.join(flagged[:3])}{more}"
    )
    warn(note)
    return [note]


class LinkabilityProbe(Probe):
    """summary.json `linkability`: cosine_mean/median, cosine_missing, D_diag_oo/aa, G_VD, backend, passthrough
    (outputs whose link cosine is >= PASSTHROUGH_COSINE, named in passthrough_utts and a note);
    scores.parquet `link.cosine`. Gate alias: `link.<figure>`."""

    kind = "linkability"
    needs = frozenset({"pairs", "embeddings"})
    table_rank = 50
    gate_aliases = {"link": "linkability", "linkability": "linkability"}

    def expected(self) -> dict:
        return dict.fromkeys(
            ("cosine_mean", "cosine_median", "cosine_missing", "D_diag_oo", "D_diag_aa", "G_VD", "passthrough"),
            float("nan"),
        )

    def run(self, ctx: ProbeContext) -> ProbeResult:
        data, valid = ctx.data, ctx.valid
        # a silent or too short pair has an embedding, but its cosine says nothing: NaN, noted
        scoreable = valid & np.array(["link.cosine" not in pair_notes for pair_notes in data.notes], dtype=bool)
        summary, columns, _ = run_linkability(
            data.original.embeddings, data.anonymized.embeddings, ctx.speakers, scoreable
        )
        measured = columns["link.cosine"].copy()  # of the files as they are now (an output may be overwritten since)
        reused = data.manifest_link if ctx.backend_name == "resemblyzer" else None
        if reused is not None:  # the anonymize run's own link_cosine (same encoder) where its manifest has one
            cos = columns["link.cosine"]
            take = scoreable & np.isfinite(reused)
            cos[take] = reused[take]
            summary["cosine_from_manifest"] = int(take.sum())
            if take.any():
                summary.update(cosine_mean=float(np.nanmean(cos)), cosine_median=float(np.nanmedian(cos)))
        summary["backend"] = ctx.backend_name
        summary["cosine_missing"] = int(np.count_nonzero(~scoreable))  # unreadable pairs included
        notes = [f"linkability: G_VD not computed ({summary['G_VD_note']})"] if "G_VD_note" in summary else []
        notes.extend(passthrough_note(summary, np.fmax(measured, columns["link.cosine"]), ctx.utt_ids))
        return ProbeResult(summary, columns, notes)

    @classmethod
    def table_rows(cls, key: str, entry: dict) -> list[Row]:
        rows = [("link cosine original↔anonymized (mean)", "", fmt(entry.get("cosine_mean"), 3), "")]
        if entry.get("passthrough"):
            rows.append(
                (
                    f"outputs that keep the original voice (link cosine ≥ {PASSTHROUGH_COSINE})",
                    "",
                    str(entry["passthrough"]),
                    "",
                )
            )
        if "G_VD" in entry:
            rows.append(("voice distinctiveness G_VD dB", "", fmt(entry.get("G_VD"), 2), ""))
        return rows
