"""The packaged English sentence corpus and its fixed calibration / held-out split.

``sentences.json`` (next to this file) holds 960 prose sentences taken from the docstrings and
Language Reference of the CPython 3.11.7 standard library (PSF-2.0); SOURCE.md says how they
were chosen and ``scripts/build_corpus.py`` rebuilds them. Nothing is downloaded.

The split is a permutation seeded by ``SPLIT_SEED``: the sentences are ranked by the SHA-256
digest of ``f"{SPLIT_SEED}:{text}"``; the first ``len // 3`` of that ranking are the
calibration set (used to estimate constants such as K, docs/theory.md) and the other two thirds
the held-out set (used to report measured distortion and task quality). Both lists keep the
corpus order. A hash rather than a random generator keeps the split identical on every Python,
numpy and platform.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from importlib import resources

SPLIT_SEED = "laimco-split-v1"
CALIBRATION_FRACTION_DENOMINATOR = 3  # calibration = len // 3 sentences, held-out = the rest


class CorpusError(RuntimeError):
    """The packaged corpus file is missing or malformed (reinstall laimco with its data)."""


@cache
def _sentences() -> tuple[str, ...]:
    try:
        raw = resources.files("laimco.data").joinpath("sentences.json").read_text("utf-8")
        rows = json.loads(raw)["sentences"]
        return tuple(str(row["text"]) for row in rows)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CorpusError(f"laimco/data/sentences.json cannot be read ({err}); reinstall laimco "
                          "so that its package data is present") from err


@cache
def _calibration_indices() -> frozenset[int]:
    sentences = _sentences()
    ranking = sorted(
        range(len(sentences)),
        key=lambda i: hashlib.sha256(f"{SPLIT_SEED}:{sentences[i]}".encode()).hexdigest(),
    )
    return frozenset(ranking[: len(sentences) // CALIBRATION_FRACTION_DENOMINATOR])


def load_sentences() -> list[str]:
    """All corpus sentences, in file order (960 unique English prose sentences)."""
    return list(_sentences())


def calibration_sentences() -> list[str]:
    """The calibration third of the corpus (320 sentences), in corpus order."""
    chosen = _calibration_indices()
    return [s for i, s in enumerate(_sentences()) if i in chosen]


def heldout_sentences() -> list[str]:
    """The held-out two thirds of the corpus (640 sentences), in corpus order."""
    chosen = _calibration_indices()
    return [s for i, s in enumerate(_sentences()) if i not in chosen]
