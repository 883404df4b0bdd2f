"""Running a sweep: expand it, compute every chunk not finished yet in an executor, write each
chunk's rows as it finishes, then the whole table in chunk order (docs/study.md, "Chunks,
resumption, tables"). What a row holds is the business of the kind's producer
(`laimco.experiments.sweep.producers`)."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from laimco.experiments.sweep.errors import SweepError
from laimco.experiments.sweep.expansion import ENGINE_VERSION, ChunkTask, Expansion, expand
from laimco.experiments.sweep.producers import producer_for, run_chunk
from laimco.experiments.sweep.progress import ProgressBar
from laimco.experiments.sweep.spec import SweepSpec
from laimco.experiments.sweep.tables import (
    Format,
    atomic_write,
    consolidate,
    read_columns,
    write_table,
)


@dataclass(frozen=True)
class SweepResult:
    """Where the table is and what the run did."""

    table: Path
    timings: Path | None
    n_points: int
    n_chunks: int
    chunks_run: int
    evaluations_run: int
    seconds: float
    complete: bool


def table_path(out: Path, fmt: Format) -> Path:
    return out / f"results.{fmt}"


def _timed_chunk(task: ChunkTask) -> tuple[str, pa.Table, float]:
    started = time.perf_counter()
    table = run_chunk(task)
    return task.key, table, time.perf_counter() - started


def _expand_into(spec: SweepSpec, out: Path) -> Expansion:
    """Every point validated before any chunk runs ("config:" profiles are cached in out/);
    on failure no folder this call created is left behind."""
    check_output_folder(out, spec)
    created = not out.exists()
    try:
        expansion = expand(spec, out)
        (out / "parts").mkdir(parents=True, exist_ok=True)
    except (SweepError, OSError) as err:
        if created and out.is_dir():
            shutil.rmtree(out)
        if isinstance(err, OSError):
            raise SweepError(f"cannot write the output folder {str(out)!r}: "
                             f"{err.strerror or err}") from None
        raise
    return expansion


def run_sweep(spec: SweepSpec, out: str | Path, *, executor: Any = None, fmt: Format = "parquet",
              progress: bool = True, console: Any = None) -> SweepResult:
    """Expand, run every chunk not finished yet (in `executor`, default in-process), write each
    chunk's rows as it finishes, then the whole table in chunk order.

    `out/parts/KEY.FMT` is one finished chunk; a rerun skips those, so an interrupted sweep
    loses at most the chunks in flight. `out/results.FMT` (no wall-clock columns) is the same
    bytes whichever executor computed it and however often it was interrupted;
    `out/timings.FMT` holds the wall-clock columns of kinds that have them (design: solve
    times)."""
    from laimco.experiments.executors import InProcessExecutor

    started = time.perf_counter()
    out = Path(out)
    expansion = _expand_into(spec, out)
    producer = producer_for(spec.kind)
    chunks = expansion.chunks
    part_of = {c.key: out / "parts" / f"{c.key}.{fmt}" for c in chunks}
    todo = [c for c in chunks if not part_of[c.key].is_file()]
    by_key = {c.key: c for c in todo}
    table = table_path(out, fmt)
    if todo:
        table.unlink(missing_ok=True)  # never leave a table that does not match the parts
    _write_manifest(out, expansion, fmt, complete=False)
    if executor is None or producer.in_process:
        executor = InProcessExecutor()
    evaluations = 0
    with ProgressBar(spec.name, chunks, todo, progress, console) as advance:
        for key, rows, _ in executor.map_unordered(_timed_chunk, todo):
            write_table(part_of[key], rows, fmt)
            evaluations += by_key[key].evaluations
            advance(by_key[key].evaluations)
    parts = [part_of[c.key] for c in chunks]
    timing = producer.timing_columns
    consolidate(parts, table, fmt, keep=lambda n: n not in timing)
    timings = None
    if timing:
        timings = out / f"timings.{fmt}"
        consolidate(parts, timings, fmt, keep=lambda n: n in ("point", "strategy", *timing))
    _write_manifest(out, expansion, fmt, complete=True)
    return SweepResult(table=table, timings=timings, n_points=len(expansion.points),
                       n_chunks=len(chunks), chunks_run=len(todo), evaluations_run=evaluations,
                       seconds=time.perf_counter() - started, complete=True)


def check_output_folder(out: Path, spec: SweepSpec) -> None:
    """Refuse an output folder that cannot hold this sweep, before anything is written: a
    file, a path under a file, an unwritable place, a non-empty folder laimco did not write
    (no manifest.json), or the folder of another sweep."""
    shown = repr(str(out))
    if out.exists() and not out.is_dir():
        raise SweepError(f"output folder {shown} is a file: give a folder")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise SweepError(f"output folder {shown} is under the file {str(existing)!r}: "
                         "give a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SweepError(f"output folder {shown}: {str(existing)!r} is not writable")
    if existing != out or {p.name for p in out.iterdir()} <= {"profiles"}:
        return  # new, empty, or holding only the profile cache `expand` writes
    manifest = out / "manifest.json"
    try:
        written = json.loads(manifest.read_text())
        name, kind = written["name"], written["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        raise SweepError(f"output folder {shown} holds files laimco did not write (no sweep "
                         "manifest.json): give a new or empty folder") from None
    if (name, kind) != (spec.name, spec.kind):
        raise SweepError(f"output folder {shown} holds the {kind} sweep {name!r}, not "
                         f"{spec.name!r}: give another folder")


def _write_manifest(out: Path, expansion: Expansion, fmt: Format, complete: bool) -> None:
    spec = expansion.spec
    manifest = {
        "name": spec.name, "kind": spec.kind, "sweep_file": str(spec.path),
        "quick": spec.quick, "format": fmt, "engine_version": ENGINE_VERSION,
        "n_points": len(expansion.points), "strategies": list(spec.strategies),
        "realizations": spec.realizations, "seed": spec.seed,
        "axes": [{"key": a.key, "values": list(a.values)} for a in spec.axes],
        "set": spec.overrides, "options": spec.options.model_dump(exclude_none=True),
        "base": str(spec.base) if spec.base else None,
        "chunks": [c.key for c in expansion.chunks], "complete": complete,
    }
    text = json.dumps(manifest, indent=1) + "\n"

    def write(path: Path) -> None:
        path.write_text(text)
    atomic_write(out / "manifest.json", write)


def read_table(out: str | Path) -> dict[str, np.ndarray]:
    """The results table of a finished sweep folder, as named numpy columns
    (`tables.read_columns`)."""
    out = Path(out)
    manifest = json.loads((out / "manifest.json").read_text())
    if not manifest.get("complete"):
        raise SweepError(f"{out}: the sweep has not finished; rerun it to complete the table")
    return read_columns(table_path(out, manifest["format"]))
