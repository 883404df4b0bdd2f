"""Where the chunks of a sweep run: this process, a local process pool, or a Dask cluster.

Every executor has one method, `map_unordered(fn, tasks)`, that yields `fn(task)` as each
finishes, with at most `window` tasks in flight (so memory stays bounded however many chunks
a sweep has). Results come back to the calling process, which alone writes files: Dask workers
on other machines need laimco installed, not the sweep's folder.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class ExecutorError(RuntimeError):
    """An executor that cannot start (missing package, unreachable scheduler)."""


class InProcessExecutor:
    """Runs each task in this process, one after another."""

    workers = 1
    name = "in-process"

    def map_unordered(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]:
        for task in tasks:
            yield fn(task)

    def close(self) -> None:
        pass

    def __enter__(self) -> InProcessExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def die_with_parent(parent_pid: int, poll_s: float = 0.5) -> None:
    """Make this worker process end when `parent_pid` does, even if the parent is SIGKILLed
    (no cleanup runs there): on Linux the kernel sends SIGKILL at once (prctl
    PR_SET_PDEATHSIG); everywhere a daemon thread exits the process when the parent pid
    changes (an orphan is re-parented). The kernel's signal follows the parent *thread* that
    started the worker: a pool is used from the thread that made it (the CLI's main thread)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # the watchdog below still applies

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    if os.getppid() != parent_pid:  # the parent died before this ran
        os._exit(1)
    threading.Thread(target=watch, name="laimco-parent-watchdog", daemon=True).start()


class PoolExecutor:
    """A pool of `workers` local processes (spawned: no inherited threads or locks) that end
    with this process, however it ends (`die_with_parent`)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.name = f"process pool ({workers} workers)"
        self._pool = ProcessPoolExecutor(max_workers=workers,
                                         mp_context=multiprocessing.get_context("spawn"),
                                         initializer=die_with_parent, initargs=(os.getpid(),))

    def map_unordered(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]:
        pending: set[Future[R]] = set()
        queue = iter(tasks)
        window = 2 * self.workers
        try:
            for task in queue:
                pending.add(self._pool.submit(fn, task))
                if len(pending) >= window:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        yield future.result()
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result()
        finally:
            for future in pending:
                future.cancel()

    def close(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def __enter__(self) -> PoolExecutor:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        self.close(wait=kind is None)  # interrupted: do not wait for the chunks in flight


class DaskExecutor:
    """A Dask `distributed` client: on a new LocalCluster of `local_workers` single-threaded
    worker processes, or on an existing scheduler at `address` (tcp://host:8786)."""

    def __init__(self, *, local_workers: int | None = None, address: str | None = None,
                 connect_timeout_s: float = 10.0) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ExecutorError("Dask executors need dask[distributed]: "
                                "pip install 'laimco[study]'") from None
        self._cluster: Any = None
        if address is not None:
            try:
                self._client = Client(address, timeout=f"{connect_timeout_s}s")
            except (OSError, TimeoutError) as err:
                raise ExecutorError(f"cannot reach the Dask scheduler at {address}: {err}"
                                    ) from None
            self.name = f"dask scheduler {address}"
        else:
            n = local_workers or os.cpu_count() or 1
            self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                         dashboard_address=None)
            self._client = Client(self._cluster)
            self.name = f"dask LocalCluster ({n} workers)"
        self.workers = max(len(self._client.scheduler_info().get("workers", {})), 1)

    def map_unordered(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]:
        from distributed import as_completed

        queue = iter(tasks)
        submitted = [self._client.submit(fn, t, pure=False)
                     for _, t in zip(range(2 * self.workers), queue, strict=False)]
        running = as_completed(submitted)
        try:
            for future in running:
                result = future.result()
                following = next(queue, None)
                if following is not None:
                    submitted.append(self._client.submit(fn, following, pure=False))
                    running.add(submitted[-1])
                future.release()
                yield result
        finally:
            self._client.cancel([f for f in submitted if not f.done()])

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Executor = InProcessExecutor | PoolExecutor | DaskExecutor


def make_executor(*, workers: int | None = None, dask_local: int | None = None,
                  scheduler: str | None = None) -> Executor:
    """The executor the command-line options ask for: `--scheduler` (an existing Dask
    cluster), `--dask-local N` (a new local one), else a process pool of `workers` (default:
    one per core; 1 = this process)."""
    if scheduler is not None and dask_local is not None:
        raise ExecutorError("give --scheduler or --dask-local, not both")
    if scheduler is not None:
        return DaskExecutor(address=scheduler)
    if dask_local is not None:
        if dask_local < 1:
            raise ExecutorError(f"--dask-local needs at least 1 worker, got {dask_local}")
        return DaskExecutor(local_workers=dask_local)
    n = workers if workers is not None else (os.cpu_count() or 1)
    if n < 1:
        raise ExecutorError(f"--workers needs at least 1, got {n}")
    return InProcessExecutor() if n == 1 else PoolExecutor(n)
