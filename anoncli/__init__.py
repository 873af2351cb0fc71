"""anoncli: anonymize whole speech corpora before release."""

__version__ = "0.1.0"
