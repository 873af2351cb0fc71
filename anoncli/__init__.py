"""anoncli: anonymize whole speech corpora before release."""

import warnings as _warnings

__version__ = "0.1.0"

# pyworld and webrtcvad (through resemblyzer) import setuptools' deprecated pkg_resources at import
# time; the notice says nothing about anoncli's data and would land in every run's stderr.
_warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
