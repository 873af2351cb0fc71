"""Scoring library shared by `evaluate`, `anonymize --score` and the trainers' validation.

Nothing here knows about commands, jobs or report files: functions take arrays
(or 16 kHz waves) and return figures. Modules, one job each:
  metrics        EER/minDCF, normalised privacy scores, UAR, ROC AUC, bootstrap CIs
  signal_metrics STOI, F0 correlation, log-spectral distance, duration ratio, SDR
  features       16 kHz decoding, mel power, per-utterance attacker feature vectors
  embeddings     speaker-embedding backends (resemblyzer, a speechbrain folder, our ECAPA run)
  probe          cross-validation folds and the cross-validated classifier probe
  quick_scores   cheap per-utterance scores for `anoncli anonymize --score`
"""
