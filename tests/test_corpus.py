"""The packaged sentence corpus is real English prose, varied, and split reproducibly.

The split is recomputed here from its documented rule (SHA-256 ranking, laimco/data/SOURCE.md);
the prose checks are written independently of the filters in scripts/build_corpus.py; and the
shipped file is rebuilt from the standard library when the recorded Python version runs.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from laimco.data import calibration_sentences, heldout_sentences, load_sentences
from laimco.data.corpus import SPLIT_SEED

ROOT = Path(__file__).resolve().parents[1]
DATA_FILE = ROOT / "src" / "laimco" / "data" / "sentences.json"
SCRIPT = ROOT / "scripts" / "build_corpus.py"
RAW = json.loads(DATA_FILE.read_text(encoding="utf-8"))


def test_corpus_has_at_least_600_sentences_and_matches_the_file() -> None:
    sentences = load_sentences()
    assert len(sentences) >= 600
    assert sentences == [row["text"] for row in RAW["sentences"]]
    assert RAW["counts"]["selected"] == len(sentences)


def test_corpus_records_its_source_and_licence() -> None:
    assert RAW["license"] == "PSF-2.0"
    assert RAW["python_version"] in RAW["source"]
    assert all(row["origin"] for row in RAW["sentences"])
    source_doc = (ROOT / "src" / "laimco" / "data" / "SOURCE.md").read_text(encoding="utf-8")
    assert "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2" in source_doc
    assert f"{len(load_sentences())} English prose sentences" in source_doc


def test_split_is_a_disjoint_partition_one_third_calibration() -> None:
    everything = load_sentences()
    calibration, heldout = calibration_sentences(), heldout_sentences()
    assert len(calibration) == len(everything) // 3
    assert len(calibration) + len(heldout) == len(everything)
    assert set(calibration).isdisjoint(heldout)
    assert set(calibration) | set(heldout) == set(everything)


def test_split_follows_the_documented_sha256_ranking_and_keeps_corpus_order() -> None:
    everything = load_sentences()
    digest = {s: hashlib.sha256(f"{SPLIT_SEED}:{s}".encode()).hexdigest() for s in everything}
    expected = set(sorted(everything, key=digest.__getitem__)[: len(everything) // 3])
    assert calibration_sentences() == [s for s in everything if s in expected]
    assert heldout_sentences() == [s for s in everything if s not in expected]


def test_loading_is_deterministic_and_returns_fresh_lists() -> None:
    first = load_sentences()
    first.clear()
    assert load_sentences() == [row["text"] for row in RAW["sentences"]]
    assert calibration_sentences() == calibration_sentences()
    assert heldout_sentences() == heldout_sentences()


def test_sentences_look_like_prose() -> None:
    code_or_markup = re.compile(r"[_=<>{}\[\]`*|\\/#@$\"]|://|>>>|\.\w+\(|\w\.\w+\w\.")
    n_words = n_lower = 0
    for sentence in load_sentences():
        words = sentence.split()
        assert 8 <= len(words) <= 40, sentence
        assert sentence[0].isupper() and sentence.endswith(".") and not sentence.endswith(".."), (
            sentence)
        assert sentence == " ".join(words), sentence  # single spaces, no tabs or newlines
        assert not code_or_markup.search(sentence), sentence
        assert not re.search(r"\b[a-z]+[A-Z]\w*|\b[A-Z][a-z]+[A-Z]\w*", sentence), sentence
        # mostly ordinary lower-case words, as running English is (not titles or name lists)
        lower = sum(w.strip("(),;:.").isalpha() and w.strip("(),;:.").islower() for w in words)
        assert lower >= 0.4 * len(words), sentence
        n_words, n_lower = n_words + len(words), n_lower + lower
    assert n_lower >= 0.85 * n_words


def test_sentences_are_unique_ignoring_case_and_punctuation() -> None:
    keys = [" ".join(re.sub(r"[^a-z0-9]+", " ", s.lower()).split()) for s in load_sentences()]
    assert len(set(keys)) == len(keys)


def test_sentences_come_from_many_sources_none_dominating() -> None:
    groups = Counter(
        row["origin"] if row["origin"].startswith("reference:") else row["origin"].split(".")[0]
        for row in RAW["sentences"]
    )
    assert len(groups) >= 150
    assert max(groups.values()) <= 0.01 * len(RAW["sentences"])
    first_words = Counter(s.split()[0] for s in load_sentences())
    assert max(first_words.values()) <= 0.2 * len(RAW["sentences"])


@pytest.mark.skipif(
    platform.python_implementation() != "CPython"
    or platform.python_version() != RAW["python_version"],
    reason=f"the shipped corpus is rebuilt only under CPython {RAW['python_version']}",
)
@pytest.mark.slow
def test_build_script_reproduces_the_shipped_file_byte_for_byte() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
