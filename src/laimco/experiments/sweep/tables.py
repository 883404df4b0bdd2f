"""Sweep tables on pyarrow: the rows a producer builds, one file per chunk, and the whole table
in chunk order, as Parquet (zstd) or CSV (docs/study.md, "Chunks, resumption, tables").

A CSV table's first line names the columns and its second line gives their types (`int64`,
`float64`, `bool`, `string`, and `Int64` for an integer column that may be empty); pyarrow
writes the rows (floats shortest round-trip, strings quoted). `read_columns` gives any table
back as numpy columns for the study's analyses, a nullable integer column as float64 with NaN.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

Format = Literal["parquet", "csv"]
# integer columns that are null where a row has no value (an infeasible row's split; the
# activation width where none crosses the link): null in Parquet, empty in CSV, NaN in the
# float64 arrays `read_columns` returns
NULLABLE_INT_COLUMNS = ("split", "activation_bits")
_CSV_TYPES = {"int64": pa.int64(), "Int64": pa.int64(), "float64": pa.float64(),
              "bool": pa.bool_(), "string": pa.string()}


class RowBuilder:
    """Columns that grow row by row (or block by block) into one pyarrow table."""

    def __init__(self) -> None:
        self.columns: dict[str, list[np.ndarray]] = {}

    def add(self, n: int, **values: Any) -> None:
        """n rows; a scalar value is repeated, an array gives one value per row."""
        for name, value in values.items():
            array = (np.broadcast_to(np.asarray(value), (n,)) if np.ndim(value) == 0
                     else np.asarray(value))
            self.columns.setdefault(name, []).append(array)

    def table(self, axes: Sequence[tuple[str, str]]) -> pa.Table:
        """The table; `axes` ((key, dtype), …) types the axis columns. A NULLABLE_INT column
        is int64 with nulls where its value is NaN."""
        dtypes = dict(axes)
        arrays = {}
        for name, parts in self.columns.items():
            joined = np.concatenate(parts)
            if name in NULLABLE_INT_COLUMNS:
                values = joined.astype(np.float64)
                null = np.isnan(values)
                arrays[name] = pa.array(np.where(null, 0, values).astype(np.int64), mask=null,
                                        type=pa.int64())
            elif joined.dtype.kind in "USO" or dtypes.get(name) == "string":
                arrays[name] = pa.array([str(v) for v in joined.tolist()], type=pa.string())
            elif dtypes.get(name) == "float64":
                arrays[name] = pa.array(joined.astype(np.float64))
            else:
                arrays[name] = pa.array(joined)
        return pa.table(arrays)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _csv_type_name(table: pa.Table, name: str) -> str:
    kind = table.schema.field(name).type
    if name in NULLABLE_INT_COLUMNS:
        return "Int64"
    return next((n for n, t in _CSV_TYPES.items() if t == kind and n != "Int64"), "string")


def _write_csv_header(handle: Any, table: pa.Table) -> None:
    out = csv.writer(handle, lineterminator="\n")
    out.writerow(table.column_names)
    out.writerow(_csv_type_name(table, n) for n in table.column_names)


def _append_csv_rows(path: Path, table: pa.Table) -> None:
    with path.open("ab") as handle:
        pa_csv.write_csv(table, handle, pa_csv.WriteOptions(include_header=False))


def write_table(path: Path, table: pa.Table, fmt: Format) -> None:
    """Write a table as one Parquet or CSV file, atomically (temporary file + rename)."""
    if fmt == "parquet":
        atomic_write(path, lambda p: pq.write_table(table, p, compression="zstd"))
        return

    def write(p: Path) -> None:
        with p.open("w", newline="") as handle:
            _write_csv_header(handle, table)
        _append_csv_rows(p, table)
    atomic_write(path, write)


def read_arrow(path: Path) -> pa.Table:
    """A Parquet or CSV table written by `write_table`, as a pyarrow table."""
    if path.suffix == ".parquet":
        return pq.read_table(path)
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        names, type_names = next(reader), next(reader)
    types = {n: _CSV_TYPES[t] for n, t in zip(names, type_names, strict=True)}
    return pa_csv.read_csv(
        path, read_options=pa_csv.ReadOptions(skip_rows_after_names=1),
        convert_options=pa_csv.ConvertOptions(
            column_types=types, strings_can_be_null=False, quoted_strings_can_be_null=False,
            null_values=[""], true_values=["true"], false_values=["false"]))


def numpy_columns(table: pa.Table) -> dict[str, np.ndarray]:
    """Named numpy columns: strings as object arrays, a NULLABLE_INT column as float64 (NaN
    where null)."""
    out = {}
    for name in table.column_names:
        column = table.column(name)
        if name in NULLABLE_INT_COLUMNS:
            out[name] = column.cast(pa.float64()).fill_null(np.nan).to_numpy()
        elif column.type == pa.string():
            out[name] = np.array(column.to_pylist(), dtype=object)
        else:
            out[name] = column.to_numpy()
    return out


def read_columns(path: Path) -> dict[str, np.ndarray]:
    """Named numpy columns of a Parquet or CSV file written by `write_table`."""
    return numpy_columns(read_arrow(path))


def consolidate(parts: Sequence[Path], target: Path, fmt: Format,
                keep: Callable[[str], bool]) -> None:
    """Concatenate the chunk files in order into `target` (only the columns `keep` accepts),
    one chunk in memory at a time."""
    def chosen(part: Path) -> pa.Table:
        table = read_arrow(part)
        return table.select([n for n in table.column_names if keep(n)])

    if fmt == "parquet":
        def write(p: Path) -> None:
            writer = None
            try:
                for part in parts:
                    table = chosen(part)
                    if writer is None:
                        writer = pq.ParquetWriter(p, table.schema, compression="zstd")
                    writer.write_table(table)
            finally:
                if writer is not None:
                    writer.close()
        atomic_write(target, write)
        return

    def write_csv(p: Path) -> None:
        for i, part in enumerate(parts):
            table = chosen(part)
            if i == 0:
                with p.open("w", newline="") as handle:
                    _write_csv_header(handle, table)
            _append_csv_rows(p, table)
    atomic_write(target, write_csv)
