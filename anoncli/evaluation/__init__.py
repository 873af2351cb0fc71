"""`anoncli evaluate`: privacy and utility probes of an anonymized corpus against its original.

Modules, one job each:
  metrics        EER/minDCF, normalised privacy scores, UAR, ROC AUC, bootstrap CIs
  signal_metrics STOI, F0 correlation, log-spectral distance, duration ratio
  embeddings     speaker-embedding backends (resemblyzer, speechbrain folder, our ECAPA)
  features       per-utterance feature vectors for the attribute attackers
  extraction     one pass over the pairs computing every per-utterance quantity, with a cache
  pairing        original <-> anonymized pairs from a manifest or by relative path
  asv            enrolment/trial split, OO/OA/AA trials and their EER
  attribute      ignorant and informed attribute attackers (and `anoncli train --method attribute`)
  asv_training   ECAPA-TDNN speaker encoder (`anoncli train --method asv`)
  asr            word error rate with pocketsphinx or a local speechbrain ASR
  linkability    original<->anonymized cosine and voice distinctiveness G_VD
  gate           the release gate (`--gate "asv.OA.eer>=80"`)
  report         scores.parquet, trials.parquet, summary.json, report.html
  report_io      reading a finished report (used by `anoncli inspect`)
  quick_scores   cheap per-utterance scores for `anoncli anonymize --score`
  runner         the probe pipeline behind the CLI command
"""
