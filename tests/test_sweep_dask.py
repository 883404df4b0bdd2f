"""Sweeps on Dask: a real LocalCluster (worker processes, scheduler over TCP) computes a sweep
table byte for byte equal to the in-process run, through `--dask-local` and `--scheduler`."""

from __future__ import annotations

from pathlib import Path

import pytest

from laimco.experiments.executors import DaskExecutor, ExecutorError, make_executor
from laimco.experiments.sweep import load_sweep, read_table, run_sweep

pytestmark = pytest.mark.slow  # runs sweeps on a Dask cluster

distributed = pytest.importorskip("distributed")
ROOT = Path(__file__).resolve().parents[1]

SWEEP = f"""[sweep]
base = "{ROOT / 'scenarios' / 'minilm-phone-rayleigh.toml'}"
kind = "fading"
strategies = ["joint", "on-device", "max-power"]
realizations = 300
[axes]
"channel.path_gain" = [1e-7, 1e-9, 1e-10]
"task.latency_budget_s" = [0.15, 0.3]
"""


def test_local_cluster_table_equals_the_local_run(tmp_path: Path) -> None:
    file = tmp_path / "fading.toml"
    file.write_text(SWEEP)
    spec = load_sweep(file)
    local = run_sweep(spec, tmp_path / "local", progress=False)
    with make_executor(dask_local=2) as executor:
        assert isinstance(executor, DaskExecutor) and executor.workers == 2
        on_dask = run_sweep(spec, tmp_path / "dask", executor=executor, progress=False)
        # the same cluster reached by its address, as `--scheduler tcp://…` does
        address = executor._client.scheduler.address
        with make_executor(scheduler=address) as remote:
            by_address = run_sweep(spec, tmp_path / "address", executor=remote,
                                   progress=False)
    assert on_dask.chunks_run == local.chunks_run == 6
    assert on_dask.table.read_bytes() == local.table.read_bytes()
    assert by_address.table.read_bytes() == local.table.read_bytes()
    assert len(read_table(tmp_path / "dask")["point"]) == 6 * 3 * 300


def test_executor_options_that_cannot_work_are_refused() -> None:
    with pytest.raises(ExecutorError, match="not both"):
        make_executor(dask_local=2, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(ExecutorError, match="cannot reach the Dask scheduler"):
        DaskExecutor(address="tcp://127.0.0.1:9", connect_timeout_s=1)
