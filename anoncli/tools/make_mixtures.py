"""Make a sound-event + speech mixture corpus for RDAL-M.

    python -m anoncli.tools.make_mixtures SPEECH_CORPUS EVENTS_DIR --out DIR --snr 0
    python -m anoncli.tools.make_mixtures SPEECH_CORPUS EVENTS_DIR --out DIR --synthesize-events 40

With --synthesize-events N, EVENTS_DIR is first filled with N synthetic events
per class (tone, noise_burst, chirp, clicks, siren); otherwise EVENTS_DIR must
hold recordings in one sub-folder per class, or a metadata.csv with path, label and
source_id (clips of one source stay on one side of the split), or pass --events-labels CSV.
--more-events pools further events folders (--event-alias OLD=NEW merges class names,
--test-folds F puts the sources of a corpus's folds F in the test split), --level draws
each mixture's level in dBFS, and --only-split test writes only the test mixtures (the
same ones, e.g. at another --level).
"""

from __future__ import annotations

import argparse
import json
import sys

from anoncli.errors import AnoncliError


def _snr(text: str):
    if "," in text:
        return [float(v) for v in text.split(",") if v.strip()]
    if ":" in text:
        low, high = text.split(":", 1)
        return (float(low), float(high))
    return float(text)


def main(argv: list[str] | None = None) -> int:
    """Command line of `python -m anoncli.tools.make_mixtures`: build event/speech mixtures; prints the corpus path as JSON.

    Returns 0, or 2 (after a one-line error) on bad input.
    """
    from anoncli.mixtures import make_mixtures, synthesize_events

    parser = argparse.ArgumentParser(prog="python -m anoncli.tools.make_mixtures", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "speech_corpus", help="corpus folder with speech (metadata.csv with speaker is used if present)"
    )
    parser.add_argument("events_dir", help="folder of event recordings, one sub-folder per class")
    parser.add_argument(
        "--more-events", action="append", default=[], metavar="DIR", help="another events folder (repeatable)"
    )
    parser.add_argument(
        "--level",
        type=_snr,
        default=None,
        help="mixture level in dBFS (RMS of its active span): fixed, LOW:HIGH or A,B,C (default: the event's own)",
    )
    parser.add_argument(
        "--test-folds", default=None, help="comma-separated folds whose sources are the test split (ESC-50: 4)"
    )
    parser.add_argument("--event-alias", action="append", default=[], metavar="OLD=NEW", help="rename an event class")
    parser.add_argument("--only-split", default=None, choices=("train", "test"), help="write only this split")
    parser.add_argument("--out", required=True, help="output folder (mixtures/, stems/)")
    parser.add_argument(
        "--snr",
        type=_snr,
        default=0.0,
        help="event-to-speech ratio in dB, LOW:HIGH drawn per mixture, or a list A,B,C drawn from; write --snr=-5:5 for a negative start (default 0)",
    )
    parser.add_argument(
        "--speech-fraction", type=float, default=0.5, help="fraction of mixtures with speech (default 0.5)"
    )
    parser.add_argument("--duration", type=float, default=2.0, help="clip length in seconds (default 2)")
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument(
        "--test-fraction", type=float, default=0.25, help="fraction of mixtures in the held-out test split"
    )
    parser.add_argument("--max-mixtures", type=int, default=None)
    parser.add_argument(
        "--events-labels", default=None, help="CSV with file_name and event columns instead of sub-folders"
    )
    parser.add_argument(
        "--synthesize-events",
        type=int,
        default=0,
        metavar="N",
        help="first write N synthetic events per class into EVENTS_DIR",
    )
    parser.add_argument(
        "--more-speech",
        action="append",
        default=[],
        metavar="CORPUS",
        help="another speech corpus whose speakers join the pool (repeatable)",
    )
    parser.add_argument("--per-event", type=int, default=1, help="mixtures made from each event recording (default 1)")
    parser.add_argument(
        "--test-speakers",
        default=None,
        help="comma-separated speakers whose speech goes only into test mixtures (default: a --test-fraction of speakers)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.synthesize_events:
            synthesize_events(
                args.events_dir,
                per_class=args.synthesize_events,
                sample_rate=args.sample_rate,
                duration_s=args.duration,
                seed=args.seed,
            )
        test_speakers = [v.strip() for v in args.test_speakers.split(",") if v.strip()] if args.test_speakers else None
        aliases = dict(pair.split("=", 1) for pair in args.event_alias if "=" in pair)
        corpus = make_mixtures(
            [args.speech_corpus, *args.more_speech],
            [args.events_dir, *args.more_events] if args.more_events else args.events_dir,
            args.out,
            snr_db=args.snr,
            speech_fraction=args.speech_fraction,
            duration_s=args.duration,
            sample_rate=args.sample_rate,
            test_fraction=args.test_fraction,
            events_labels=args.events_labels,
            max_mixtures=args.max_mixtures,
            seed=args.seed,
            overwrite=args.overwrite,
            per_event=args.per_event,
            test_speakers=test_speakers,
            level_dbfs=args.level,
            test_folds=args.test_folds.split(",") if args.test_folds else None,
            event_aliases=aliases,
            splits=[args.only_split] if args.only_split else None,
        )
    except AnoncliError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"corpus": str(corpus)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
