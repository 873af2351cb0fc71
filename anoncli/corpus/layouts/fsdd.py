"""Free Spoken Digit Dataset (FSDD): `recordings/D_name_I.wav`.

D digit, name speaker, I repetition. Gender and accent of the six original
speakers are from the dataset's own metadata (all male); speakers added
later get no gender rather than a guess.
"""

from __future__ import annotations

import re

from anoncli.corpus.layouts.base import FilenameLayout

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

SPEAKERS = {  # speaker: (gender, accent)
    "george": ("male", "GRC/Greek"),
    "jackson": ("male", "USA/neutral"),
    "lucas": ("male", "DEU/German"),
    "nicolas": ("male", "BEL/French"),
    "theo": ("male", "USA/neutral"),
    "yweweler": ("male", "DEU/German"),
}


class FSDD(FilenameLayout):
    """Free Spoken Digit Dataset: digit, speaker and repetition from the name."""

    name = "fsdd"
    title = "FSDD (D_name_I.wav)"
    columns = ("speaker", "gender", "accent", "digit", "transcript", "repetition")
    pattern = re.compile(r"(?:^|/)(\d)_([A-Za-z][A-Za-z]*)_(\d+)\.wav$", re.IGNORECASE)

    def labels_for(self, match, context):
        digit, speaker, repetition = match.groups()
        gender, accent = SPEAKERS.get(speaker.lower(), (None, None))
        return {
            "speaker": speaker,
            "gender": gender,
            "accent": accent,
            "digit": digit,
            "transcript": DIGIT_WORDS[int(digit)],
            "repetition": repetition,
        }
