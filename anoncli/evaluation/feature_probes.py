"""Evaluation of representation-level outputs: a service and an attacker learn on intercepted outputs.

`anoncli evaluate` calls `evaluate_features` when an anonymized folder holds
feature vectors (Siamese, RDAL-M `--emit features|both`) or RDAL-M's
speech-suppressed audio. It plays both sides of the papers' threat model:

* the *service* trains its utility head (gender MLP for Siamese, event
  classifier for RDAL-M) on the intercepted outputs and is scored on held-out
  items: utility accuracy;
* the *attacker* trains its own classifier on the same intercepted outputs:
  a closed-set speaker-ID MLP within one gender (Siamese) or a speech-presence
  MLP (RDAL-M); attacker accuracy, chance level and ROC AUC (binary attributes).

For RDAL-M audio outputs it also trains the speech-presence attacker on the
unmasked mixtures (so the drop is visible side by side) and measures the
separation SDR against the clean event stems the mixture maker wrote.

Every prediction is an out-of-fold prediction (cross-validation over the
evaluated items), so each utterance gets one row per probe.
"""

from __future__ import annotations

__all__ = ["evaluate_features", "DEFAULT_PROBES"]


def evaluate_features(original_corpus, anonymized_dir, manifest_table, probes=None, seed: int = 0):
    """Train utility heads and attackers on intercepted outputs; return per-utterance rows and a summary.

    Args:
        original_corpus: corpus root (path) of the input; needed for RDAL-M audio
            (the unmasked-mixture attacker and the SDR against clean stems named in
            its metadata), ignored for feature-only outputs.
        anonymized_dir: the OUT folder of `anoncli anonymize` (features under
            OUT/features/*.npy, audio under OUT/...; paths from the manifest).
        manifest_table: the manifest (pyarrow.Table or pandas.DataFrame) with at
            least utt_id, output_path, status, method and the label columns;
            `features_path` when a method wrote both audio and features.
        probes: list of probe names, or None for the method's defaults:
            "utility:<column>" (e.g. "utility:gender", "utility:event"),
            "attacker:<column>" (e.g. "attacker:speech_present"),
            "attacker:<column>|<group>" (e.g. "attacker:speaker|gender": one
            attacker per value of <group>, i.e. speaker-ID within one gender),
            "sdr" (RDAL-M audio: separation SDR vs clean event stem),
            "attacker-unmasked:<column>" (the same attacker on the original mixture).
        seed: seed for folds and classifier initialisation.

    Only held-out items are evaluated: rows with a `split` label of "train" are
    dropped, and so are speakers the model card lists as `train_speakers`
    (read from OUT/run.json's method config when present).

    Returns:
        (rows, summary): rows is a list of dicts, one per (utterance, probe):
        {"utt_id", "probe", "label", "predicted", "correct", "score"} (score =
        probability of the positive class for binary probes, else of the
        predicted class; "sdr_db" for the sdr probe). summary maps each probe
        name to {"accuracy", "chance", "auc" (binary only), "n", "classes",
        "normalised" (100·(1 − |acc − chance| / (1 − chance)) for attackers)}
        and, for "sdr", {"sdr_db_mean", "sdr_db_median", "n"}.
    """
    raise NotImplementedError("evaluate_features: being written (issue 6)")


DEFAULT_PROBES = {
    "siamese": ["utility:gender", "attacker:speaker|gender"],
    "siamese-ce": ["utility:gender", "attacker:speaker|gender"],
    "rdalm": ["utility:event", "attacker:speech_present", "attacker-unmasked:speech_present", "sdr"],
}
