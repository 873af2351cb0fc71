"""CREMA-D: `AudioWAV/ActorID_Sentence_Emotion_Level.wav` + `VideoDemographics.csv`.

Sentence and emotion codes are from the corpus README (Cao et al., IEEE
Trans. Affective Computing 2014); gender, age, race and ethnicity come from
VideoDemographics.csv when it is present.
"""

from __future__ import annotations

import csv
import re

from anoncli.corpus.labels import normalise_gender
from anoncli.corpus.layouts.base import FilenameLayout
from anoncli.errors import InputError

SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happiness", "NEU": "neutral", "SAD": "sadness"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified", "X": "unspecified"}

DEMOGRAPHICS = "VideoDemographics.csv"


def read_demographics(path) -> dict[str, dict[str, str | None]]:
    """VideoDemographics.csv as {ActorID: gender, age, race, ethnicity}.

    Raises InputError naming the file when it cannot be read or lacks an ActorID column.
    """
    people: dict[str, dict[str, str | None]] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = {name.strip().lower(): name for name in reader.fieldnames or []}
            if "actorid" not in fields:
                raise InputError(f"{path}: expected an ActorID column (found: {', '.join(reader.fieldnames or [])})")
            for row in reader:
                values = {key: (row.get(name) or "").strip() or None for key, name in fields.items()}
                actor = values.get("actorid")
                if actor:
                    people[actor] = {
                        "gender": normalise_gender(values.get("sex")),
                        "age": values.get("age"),
                        "race": values.get("race"),
                        "ethnicity": values.get("ethnicity"),
                    }
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None
    return people


class CremaD(FilenameLayout):
    """CREMA-D (Cao et al., 2014): actor, sentence, emotion and intensity from the name; demographics from VideoDemographics.csv."""

    name = "cremad"
    title = "CREMA-D (ActorID_Sentence_Emotion_Level.wav)"
    columns = ("speaker", "gender", "age", "race", "ethnicity", "emotion", "intensity", "text_id", "transcript")
    pattern = re.compile(
        r"(?:^|/)(1\d{3})_(" + "|".join(SENTENCES) + r")_(ANG|DIS|FEA|HAP|NEU|SAD)_(LO|MD|HI|XX|X)\.(?:wav|flac|mp3)$"
    )

    def context(self, scan):
        path = scan.side_file(DEMOGRAPHICS)
        if path is None:
            return {"people": {}, "_notes": [f"no {DEMOGRAPHICS} found: gender and age are left empty"]}
        return {"people": read_demographics(path), "source": path}

    def source_note(self, context):
        return str(context["source"]) if context.get("source") else None

    def labels_for(self, match, context):
        actor, sentence, emotion, level = match.groups()
        person = context["people"].get(actor, {})
        return {
            "speaker": actor,
            **{k: person.get(k) for k in ("gender", "age", "race", "ethnicity")},
            "emotion": EMOTIONS[emotion],
            "intensity": LEVELS[level],
            "text_id": sentence,
            "transcript": SENTENCES[sentence],
        }
