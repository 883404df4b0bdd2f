"""Fixtures shared by several test modules."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

# a module whose every test is slow says so at module level: `pytestmark = pytest.mark.slow`
# (or a list holding it)
_SLOW_MODULE = re.compile(r"^pytestmark = .*pytest\.mark\.slow\b", re.MULTILINE)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under `-m "not slow"` (make test-fast) a module marked slow as a whole is not imported:
    importing torch, transformers or MLServer alone would cost more than the fast tests."""
    if collection_path.suffix != ".py" or config.option.markexpr.strip() != "not slow":
        return None
    return bool(_SLOW_MODULE.search(collection_path.read_text(encoding="utf-8"))) or None


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny matrices gain nothing from threads, and on a shared CPU idle-spinning threads cost
    10-20x; a module that asks for this runs its forwards on one thread."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
