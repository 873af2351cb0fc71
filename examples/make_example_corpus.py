"""Regenerate examples/corpus with Debian's flite TTS (voices slt, rms, awb).

    apt-get install flite && python examples/make_example_corpus.py

The committed files were made this way; rerunning it gives the same sentences.
"""

import csv
import subprocess
from pathlib import Path

VOICES = [("slt", "female"), ("rms", "male"), ("awb", "male")]
SENTENCES = ["Please call Stella.", "The rain stopped at noon.", "Open the door slowly.", "We need seven apples."]


def main() -> None:
    root = Path(__file__).parent / "corpus"
    rows = []
    for voice, gender in VOICES:
        (root / voice).mkdir(parents=True, exist_ok=True)
        for index, text in enumerate(SENTENCES, start=1):
            rel = f"{voice}/{voice}_{index:02d}.wav"
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(root / rel)], check=True)
            rows.append({"file_name": rel, "speaker": voice, "gender": gender, "transcript": text.lower().rstrip(".")})
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file_name", "speaker", "gender", "transcript"])
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
