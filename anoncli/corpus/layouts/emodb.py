"""Berlin Database of Emotional Speech (EmoDB): `wav/SSTTTEV.wav`.

SS speaker (03..16), TTT text (a01..b10), E emotion letter (German initial),
V version. Speaker gender and age, and the ten sentences, are from the
corpus documentation (Burkhardt et al., Interspeech 2005).
"""

from __future__ import annotations

import re

from anoncli.corpus.layouts.base import FilenameLayout

EMOTIONS = {
    "W": "anger",  # Ärger (Wut)
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fear",  # Angst
    "F": "happiness",  # Freude
    "T": "sadness",  # Trauer
    "N": "neutral",
}

SPEAKERS = {  # speaker: (gender, age)
    "03": ("male", "31"),
    "08": ("female", "34"),
    "09": ("female", "21"),
    "10": ("male", "32"),
    "11": ("male", "26"),
    "12": ("male", "30"),
    "13": ("female", "32"),
    "14": ("female", "35"),
    "15": ("male", "25"),
    "16": ("female", "31"),
}

TEXTS = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}


class EmoDB(FilenameLayout):
    """EmoDB (Burkhardt et al., 2005): speaker, text and emotion from the name; gender and age from the corpus documentation."""

    name = "emodb"
    title = "EmoDB (SSTTTEV.wav)"
    columns = ("speaker", "gender", "age", "emotion", "text_id", "transcript", "version")
    pattern = re.compile(r"(?:^|/)(\d\d)([ab]\d\d)([WLEAFTN])([a-z])\.wav$", re.IGNORECASE)

    def labels_for(self, match, context):
        speaker, text_id, letter, version = match.groups()
        gender, age = SPEAKERS.get(speaker, (None, None))
        text_id = text_id.lower()
        return {
            "speaker": speaker,
            "gender": gender,
            "age": age,
            "emotion": EMOTIONS[letter.upper()],
            "text_id": text_id,
            "transcript": TEXTS.get(text_id),
            "version": version.lower(),
        }
