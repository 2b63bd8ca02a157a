"""Where parallel work runs: local worker processes that stop with the process that started them, or a Dask cluster.

Ctrl-C belongs to the parent: a terminal sends SIGINT to the whole foreground process group, and workers that
took it would each print a traceback. Workers ignore it; the parent stops them. A parent that dies without
cleaning up (SIGKILL, a crash, an out-of-memory kill) takes its workers along: on Linux the kernel sends each
worker SIGTERM (``prctl(PR_SET_PDEATHSIG)``); elsewhere a thread in each worker exits it once its parent is gone.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from fip.errors import FipError

logger = logging.getLogger(__name__)


class SchedulerError(FipError, ConnectionError):
    """The Dask scheduler named by ``--scheduler`` cannot be reached."""


class WorkersWarning(UserWarning):
    """Fewer local worker processes than asked for: more would not fit this machine's cores or memory."""


WORKER_MEMORY = 300 << 20  # a worker process with torch and one model loaded: about 300 MB, measured


def local_workers(requested: int, jobs: int) -> int:
    """How many local processes to start for ``jobs`` jobs when ``requested``: never more than the jobs, the CPU
    cores, or the processes whose :data:`WORKER_MEMORY` the available memory holds (warning when those cap it)."""
    import torch

    from fip.runtime.devices import available_memory

    cores = os.cpu_count() or 1
    memory = max(1, available_memory(torch.device("cpu")) // WORKER_MEMORY)
    capped = min(requested, cores, memory)
    if capped < min(requested, jobs):
        why = f"{cores} CPU cores" if capped == cores else f"memory for {memory} (about 300 MB each)"
        warnings.warn(
            f"fip: --workers {requested}: starting {capped} local processes, as this machine has "
            f"{why}; more would only compete for them",
            WorkersWarning,
            stacklevel=3,
        )
    return max(1, min(capped, jobs))


# From <linux/prctl.h>: the signal a process gets when the thread that created it exits.
_PR_SET_PDEATHSIG = 1
_PARENT_POLL_SECONDS = 0.5


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Hold back SIGINT in this thread; one that arrives meanwhile is delivered on leaving, not lost."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _WorkerPool(cf.ProcessPoolExecutor):
    """A process pool whose workers never see SIGINT, not even while the interpreter starts up.

    The pool spawns workers inside :meth:`submit`, and a spawned process inherits the signal mask of the thread
    that started it: blocking SIGINT there keeps a Ctrl-C pending in a starting worker (which would otherwise
    die with a traceback from an import) until :func:`_init_worker` ignores it.
    """

    def submit(self, fn, /, *args, **kwargs):
        with _sigint_blocked():
            return super().submit(fn, *args, **kwargs)


def _init_worker(parent: int, threads: int | None, environment: dict[str, str]) -> None:
    """Run first in each worker: leave Ctrl-C to ``parent`` and exit when ``parent`` is gone; take ``threads``
    torch threads and ``environment``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(environment)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # ignored now: a pending one is discarded
    if not _exit_with_parent():
        threading.Thread(target=_watch_parent, args=(parent,), name="fip-parent-watch", daemon=True).start()
    if os.getppid() != parent:  # the parent died before either took effect
        os._exit(1)


def _exit_with_parent() -> bool:
    """Ask Linux to send this process SIGTERM when its parent exits; ``False`` where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    """Exit this process once ``parent`` is gone (an orphan is adopted by another process, so its ppid changes)."""
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL_SECONDS)
    os._exit(1)


def _terminate(pool: cf.ProcessPoolExecutor) -> None:
    """Drop the queued jobs and end the workers now, without waiting for the jobs they are running."""
    if hasattr(pool, "terminate_workers"):  # Python 3.14+
        pool.terminate_workers()
        return
    processes = list((pool._processes or {}).values())  # no public way to reach them before 3.14
    # Killing the workers can fail a write of the call queue's feeder thread, whose error handler then waits for the
    # pool's shutdown lock, which the pool's manager thread holds while it joins that feeder: a deadlock before
    # CPython 3.12.8 (gh-125451). The queued jobs are dropped anyway, so the feeder is not waited for.
    if (call_queue := getattr(pool, "_call_queue", None)) is not None:
        call_queue.cancel_join_thread()
    for process in processes:
        process.terminate()
    # The pool's manager thread sees its workers die, fails the futures left and reaps the processes.
    pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def worker_pool(
    workers: int, *, threads: int | None = None, environment: dict[str, str] | None = None
) -> Iterator[cf.ProcessPoolExecutor]:
    """A pool of ``workers`` spawned processes that ignore Ctrl-C and exit when this process dies.

    Leaving the block normally waits for the submitted jobs; leaving it by an exception (``KeyboardInterrupt``
    included) drops the queued jobs and terminates the workers at once, so nothing outlives the caller. Submit
    from the thread that opened the pool: on Linux a worker gets SIGTERM when the thread that spawned it ends.
    Workers are spawned, not forked: LibRaw's OpenMP threads deadlock in forked children.

    Args:
        workers: processes.
        threads: torch threads per worker (default: torch's own choice).
        environment: variables set in each worker before any job runs.
    """
    pool = _WorkerPool(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(), threads, dict(environment or {})),
    )
    try:
        yield pool
    except BaseException:
        _terminate(pool)
        raise
    pool.shutdown(wait=True)


@contextmanager
def executor(
    workers: int, scheduler: str | None = None, *, threads: int | None = None, environment: dict[str, str] | None = None
) -> Iterator[cf.Executor | None]:
    """Where jobs run: on the Dask cluster at ``scheduler`` (``tcp://host:8786``), else in :func:`worker_pool`
    with ``workers`` > 1, else in this process (``None``). On an exception (Ctrl-C included) queued and running
    jobs are dropped rather than waited for.

    Raises:
        MissingExtraError: ``scheduler`` without the ``dask`` extra installed.
    """
    if scheduler:
        from fip.errors import require_extra

        require_extra("dask", "distributed")
        from distributed import Client

        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, ValueError, TimeoutError) as exc:
            raise SchedulerError(
                f"could not reach a Dask scheduler at {scheduler!r} ({str(exc).splitlines()[0]}); "
                "give the address it prints, e.g. tcp://10.0.0.1:8786, and check that it "
                "runs"
            ) from None
        with client:
            logger.info("running on the Dask cluster at %s (%s)", scheduler, client)
            pool = client.get_executor()
            try:
                yield pool
            except BaseException:
                pool.shutdown(wait=False)  # cancels the jobs still on the cluster
                raise
            pool.shutdown(wait=True)
    elif workers > 1:
        with worker_pool(workers, threads=threads, environment=environment) as pool:
            yield pool
    else:
        yield None
