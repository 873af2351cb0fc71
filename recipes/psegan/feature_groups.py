"""Which of the attackers' feature groups still carry a label after anonymization (validation speakers only).

The attacker of `anoncli evaluate` sees one vector per utterance: a resemblyzer
speaker embedding (256), log-mel statistics (160) and prosody statistics (17)
(`anoncli.scoring.features.attribute_features`). This script trains the same
logistic-regression head on each group alone, on the original audio of the
training speakers, and tests it on the validation speakers: on their original
audio, on the anonymized audio (ignorant) and, trained on anonymized audio of
the training speakers, on the anonymized audio again (informed).

    python recipes/psegan/feature_groups.py ../shared/corpora/ravdess-dev --files-from LIST \\
        --label emotion --validation Actor_11,Actor_12 anon/psegan anon/mcadams

Each ANON folder is an `anoncli anonymize` output of the files in LIST.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

GROUPS = {
    "all": slice(0, None),
    "embedding": slice(0, 256),
    "log-mel": slice(256, 416),
    "prosody": slice(416, 433),
    "log-mel+prosody": slice(256, 433),
}


def main() -> None:
    from anoncli.corpus import open_corpus
    from anoncli.corpus.selection import read_file_list, select_files
    from anoncli.evaluation.attribute import LogisticHead
    from anoncli.evaluation.extraction import build_backends, extract
    from anoncli.evaluation.pairing import pair_corpus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("anonymized", type=Path, nargs="+")
    parser.add_argument("--files-from", required=True)
    parser.add_argument("--label", default="emotion")
    parser.add_argument(
        "--validation", required=True, help="comma-separated speakers held out from the attacker's training"
    )
    args = parser.parse_args()

    corpus = select_files(open_corpus(args.corpus), read_file_list(args.files_from))
    _, attacker_backend = build_backends(None, False, True)
    validation = args.validation.split(",")
    for folder in args.anonymized:
        pairs = pair_corpus(corpus, folder).pairs
        ex = extract(
            pairs, None, attacker_backend, need_signal=False, need_attr=True, corpus_root=args.corpus, progress=False
        )
        utts = [utt for (utt, _), ok in zip(pairs, ex.ok) if ok]
        xo, xa = ex.original.features[ex.ok], ex.anonymized.features[ex.ok]
        labels = [u.labels[args.label] for u in utts]
        classes = sorted(set(labels))
        y = np.array([classes.index(v) for v in labels])
        test = np.isin([u.labels["speaker"] for u in utts], validation)
        train = ~test
        print(
            f"{folder}: {args.label}, {len(classes)} classes; attacker trained on {train.sum()} files, "
            f"tested on {test.sum()} ({args.validation}); accuracy %"
        )
        for group, columns in GROUPS.items():
            head = LogisticHead(xo[:, columns].shape[1], len(classes)).fit(xo[train][:, columns], y[train], 0)
            original = (head.predict_proba(xo[test][:, columns]).argmax(1) == y[test]).mean()
            ignorant = (head.predict_proba(xa[test][:, columns]).argmax(1) == y[test]).mean()
            informed_head = LogisticHead(xa[:, columns].shape[1], len(classes)).fit(xa[train][:, columns], y[train], 0)
            informed = (informed_head.predict_proba(xa[test][:, columns]).argmax(1) == y[test]).mean()
            print(
                f"  {group:16s} original {original * 100:5.1f}  ignorant {ignorant * 100:5.1f}  "
                f"informed {informed * 100:5.1f}"
            )


if __name__ == "__main__":
    main()
