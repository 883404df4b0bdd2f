"""The registry of row producers, one per sweep kind: what one row of a kind's table is and how
a chunk's rows are computed (docs/study.md, "Kinds and their rows"). The orchestration
(expansion, chunk keys, resumption, executors, storage) knows a kind only through its
`Producer`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from laimco.experiments.sweep.errors import SweepError
from laimco.experiments.sweep.tables import RowBuilder

if TYPE_CHECKING:
    from laimco.experiments.sweep.expansion import ChunkTask


@dataclass(frozen=True)
class Producer:
    """How one kind of sweep computes its rows.

    `rows(task, builder)` adds the rows of one chunk (a pure function of the task, so a chunk
    gives the same values on any worker); `chunk_points` is the default number of points per
    chunk; `decisions_per_realization` counts the solves behind one realization (the progress
    unit); `timing_columns` are wall-clock columns kept out of the reproducible table (written
    to timings.FMT); `in_process` kinds (torch and the real model) never go to an executor."""

    kind: str
    rows: Callable[[ChunkTask, RowBuilder], None]
    chunk_points: int
    decisions_per_realization: int = 1
    timing_columns: tuple[str, ...] = ()
    in_process: bool = False


_PRODUCERS: dict[str, Producer] = {}


def register(producer: Producer) -> Producer:
    """Add a kind's producer; a kind is registered once."""
    if producer.kind in _PRODUCERS:
        raise ValueError(f"sweep kind {producer.kind!r} is registered twice")
    _PRODUCERS[producer.kind] = producer
    return producer


def kinds() -> tuple[str, ...]:
    """The registered sweep kinds, in registration order."""
    return tuple(_PRODUCERS)


def producer_for(kind: str) -> Producer:
    """The producer of a sweep kind; SweepError naming the registered kinds if there is none."""
    try:
        return _PRODUCERS[kind]
    except KeyError:
        raise SweepError(f"unknown sweep kind {kind!r}: choose one of "
                         f"{', '.join(_PRODUCERS)}") from None


def run_chunk(task: ChunkTask) -> pa.Table:
    """The rows of one chunk (only the producer's timing columns differ from run to run)."""
    builder = RowBuilder()
    producer_for(task.kind).rows(task, builder)
    return builder.table(task.axes)
