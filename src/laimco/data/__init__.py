"""Packaged data: an English prose corpus for calibration and evaluation (no downloads)."""

from laimco.data.corpus import (
    CorpusError,
    calibration_sentences,
    heldout_sentences,
    load_sentences,
)

__all__ = ["CorpusError", "calibration_sentences", "heldout_sentences", "load_sentences"]
