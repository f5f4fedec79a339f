"""Figures drawn in worker processes beside the computation. matplotlib is not thread-safe, and a figure costs
about as much Python as it has axes and texts, so a run draws in a few forked processes while the main
process goes on computing, and waits for them before the report inlines the files.

    with drawing.workers(2):          # at the start of a run, before torch starts its threads
        strips.attribution_figure(...)  # a function marked @drawing.in_background is queued, not drawn here
        drawing.wait(log)              # every queued figure written (the first failure raised here)

Outside `workers()`, or with fewer than 2 workers, a marked function draws at once, in the caller's process."""
import contextlib
import functools
import multiprocessing
import os
import pickle
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor
from concurrent.futures import wait as wait_for

from hybrid_explain.pipeline.progress import Silent

_pool = None  # the ProcessPoolExecutor of the active workers() block, None outside it and in a worker
_pending = []  # futures of the queued figures


def _exit_with(parent: int):
    """A worker outlives a parent killed with SIGKILL (its queue never closes): it leaves when it notices."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _start_worker():
    """A drawing process draws what it is given: it queues nothing itself, and Ctrl-C or SIGTERM are the parent's
    to handle (it then stops the pool), so a worker prints no traceback of its own."""
    global _pool
    _pool = None
    _pending.clear()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(os.getppid(),), daemon=True).start()


@contextlib.contextmanager
def workers(count: int):
    """Draw the marked figures in `count` processes inside the block (count < 2: in the caller's process).
    The processes are forked when the block starts: start it before the run takes its lock (a worker would hold
    the lock's file) and before torch computes (a forked child of a process with running OpenMP threads hangs
    if it uses them; a worker only draws). They are stopped when the block ends, also on an error or Ctrl-C."""
    global _pool
    if count < 2 or "fork" not in multiprocessing.get_all_start_methods():  # Windows: no fork, draw in place
        yield
        return
    _pool = ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("fork"), initializer=_start_worker)
    try:
        for future in [_pool.submit(time.sleep, 0) for _ in range(count)]:  # fork them all now
            future.result()
        yield
    finally:
        pool, _pool = _pool, None
        _pending.clear()
        pool.shutdown(wait=True, cancel_futures=True)


def _draw(function, arguments: bytes):
    args, kwargs = pickle.loads(arguments)
    function(*args, **kwargs)


def in_background(function):
    """Mark a figure function (it writes its file and returns nothing) to be queued to the workers when there are.
    Its arguments are pickled at the call, so the figure shows them as they were then: the pool pickles later, in
    a thread of its own, and its pickler hands a CPU tensor over as shared memory, which the run may have reused
    by the time the worker reads it (a figure once showed values of 1e37 that no input held)."""
    @functools.wraps(function)
    def queue_or_draw(*args, **kwargs):
        if _pool is None:
            return function(*args, **kwargs)
        # pickled by name, the worker finds this wrapper, which draws there (it has no pool)
        _pending.append(_pool.submit(_draw, queue_or_draw, pickle.dumps((args, kwargs), pickle.HIGHEST_PROTOCOL)))
    return queue_or_draw


def wait(progress=None) -> int:
    """Block until every queued figure is written; raise the first failure (e.g. the OSError of a full disk).
    progress(description, total, unit): a progress.Progress-like context told each figure written. Returns how
    many figures were waited for."""
    pending, total = list(_pending), len(_pending)
    _pending.clear()
    with (progress or Silent)("drawing", total, "figure") as step:
        while pending:
            done, still = wait_for(pending, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()
            step(len(done))
            pending = list(still)
    return total


@contextlib.contextmanager
def finished():
    """Inside the block figures may be queued; when it ends, also on an error, no worker is still writing one (so a
    failed run's folder can be removed): the queued ones are cancelled, the running ones waited for."""
    try:
        yield
    finally:
        for future in _pending:
            future.cancel()
        wait_for(_pending)
        _pending.clear()
