"""`anoncli evaluate`: privacy and utility probes of an anonymized corpus against its original.

The figures themselves (metrics, signal measures, embeddings, attacker
features, folds and the cross-validated probe) come from `anoncli.scoring`.
Modules, one job each:
  extraction     one pass over the pairs computing every per-utterance quantity, with a cache
  pairing        original <-> anonymized pairs from a manifest or by relative path
  asv            enrolment/trial split, OO/OA/AA trials and their EER
  attribute      ignorant and informed attribute attackers (and `anoncli train --method attribute`)
  asr            word error rate with pocketsphinx or a local speechbrain ASR
  linkability    original<->anonymized cosine and voice distinctiveness G_VD
  gate           the release gate (`--gate "asv.OA.eer>=80"`)
  report         scores.parquet, trials.parquet, summary.json, report.html
  report_io      reading a finished report (used by `anoncli inspect`)
  runner         the probe pipeline behind the CLI command
"""
