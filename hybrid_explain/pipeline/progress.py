"""Progress of a phase, on a terminal and in a log file alike: on a terminal a tqdm bar on stderr (rewritten in
place, as training's), on a pipe or a file plain lines, at most one every `every_seconds`, so a log stays readable.

    with progress.Progress("SHAP", total=5, unit="sample") as step:
        for ...:
            step()                    # one unit done
"""
import sys
import time

EVERY_SECONDS = 3.0  # a line at least this often in a long phase of a run writing to a pipe or a file


class Progress:
    """Counts the units of a phase (total None: not known in advance) and says how many are done."""

    def __init__(self, description: str, total: int, unit: str, log=print, every_seconds: float = EVERY_SECONDS):
        self.description, self.total, self.unit, self.log, self.every = description, total, unit, log, every_seconds
        self.done = 0
        self.started = self.last_line = time.perf_counter()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=description, unit=unit, leave=False, file=sys.stderr)

    def __enter__(self):
        return self

    def __call__(self, count: int = 1):
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        now = time.perf_counter()
        if now - self.last_line >= self.every and (self.total is None or self.done < self.total):
            of = "" if self.total is None else f"/{self.total:,}"
            self.log(f"{self.description}: {self.done:,}{of} {self.unit}s ({now - self.started:.0f} s)")
            sys.stdout.flush()  # a file or pipe is block-buffered: the line is for now, not for the end of the run
            self.last_line = now

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


class Silent:
    """A Progress that says nothing (the default of the stages, for callers that show no progress)."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return lambda count=1: None

    def __exit__(self, *exc):
        pass
