"""RAVDESS: `Actor_AA/MM-VV-EE-II-SS-RR-AA.wav` (seven two-digit fields).

Modality, vocal channel, emotion, intensity, statement, repetition, actor;
odd actors are male, even actors female (Livingstone & Russo, PLoS ONE 2018).
"""

from __future__ import annotations

import re

from anoncli.corpus.layouts.base import FilenameLayout

EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happiness",
    "04": "sadness",
    "05": "anger",
    "06": "fear",
    "07": "disgust",
    "08": "surprise",
}
INTENSITY = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
CHANNELS = {"01": "speech", "02": "song"}
MODALITIES = {"01": "full-AV", "02": "video-only", "03": "audio-only"}


class RAVDESS(FilenameLayout):
    """RAVDESS (Livingstone & Russo, 2018): seven coded fields in the name; odd actors male, even female."""

    name = "ravdess"
    title = "RAVDESS (MM-VV-EE-II-SS-RR-AA.wav)"
    columns = ("speaker", "gender", "emotion", "intensity", "statement", "transcript", "vocal_channel", "repetition")
    pattern = re.compile(
        r"(?:^|/)(0[123])-(0[12])-(0[1-8])-(0[12])-(0[12])-(\d\d)-(\d\d)\.(?:wav|flac)$", re.IGNORECASE
    )

    def labels_for(self, match, context):
        modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
        return {
            "speaker": actor,
            "gender": "male" if int(actor) % 2 == 1 else "female",
            "emotion": EMOTIONS[emotion],
            "intensity": INTENSITY[intensity],
            "statement": statement,
            "transcript": STATEMENTS[statement],
            "vocal_channel": CHANNELS[channel],
            "repetition": repetition,
        }
