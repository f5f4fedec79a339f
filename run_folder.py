"""OUTPUT_DIR as a set of versioned runs, published atomically, one run at a time.

    OUTPUT_DIR/
      runs/20261201-104500-1/      a complete run: every file it wrote
      runs/20261201-110312-1/      the latest complete run
      runs/20261201-111500-1.partial/   a run in progress, or an interrupted one (only its resume state kept)
      latest -> runs/20261201-110312-1  the one switch: replaced with os.replace, so it always names a whole run
      report.html -> latest/report.html, metrics.json -> latest/metrics.json, ...   one link per file of the run
      .lock                        held (flock) for the length of a run; names the process

Every top-level name goes through `latest`, so all of them change in the one atomic os.replace of `latest`:
a reader sees the old run or the new one, never a mix. A run is written inside OUTPUT_DIR (same filesystem
by construction), renamed from `<id>.partial` to `<id>` when complete, then made the latest. The newest
KEEP_RUNS complete runs, and the resume states of as many interrupted ones, are kept; older ones are removed.
Where the filesystem has no symlinks, `latest` is a one-line file naming the run (replaced atomically) and the
top-level files are copies, each replaced atomically (the set of them is not switched at once there).

Files that an earlier version of this program wrote at the top of OUTPUT_DIR are moved, unchanged, into
runs/before-versioning/ the first time, which becomes the latest run and is never pruned.
"""
import contextlib
import errno
import fcntl
import os
import re
import shutil
import time

RUNS = "runs"
LATEST = "latest"
LOCK = ".lock"
PARTIAL = ".partial"
LEGACY = "before-versioning"
RESUME_NAME = "resume_state.pth"
_RUN_ID = re.compile(r"^\d{8}-\d{6}-\d+$")


class OutputError(ValueError):
    """OUTPUT_DIR cannot be used or written; the message is one line."""


def describe_error(exc: OSError) -> str:
    return f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")


class OutputFolder:
    """The versioned OUTPUT_DIR. Use as a context manager: entering takes the lock (or fails at once with the
    holder's pid), migrates an old flat folder and clears the leftovers of dead runs; leaving releases it."""

    def __init__(self, root: str, keep_runs: int = 5, log=print):
        self.root, self.keep_runs, self.log = os.path.abspath(root), keep_runs, log
        self.runs = os.path.join(self.root, RUNS)

    # -- the lock ----------------------------------------------------------
    def __enter__(self):
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise OutputError(f"OUTPUT_DIR {self.root} is a file, not a folder; move it or choose another "
                              "--output_dir")
        try:
            os.makedirs(self.runs, exist_ok=True)
            self.lock_file = open(os.path.join(self.root, LOCK), "a+")
        except OSError as exc:
            raise OutputError(f"cannot write into OUTPUT_DIR {self.root}: {describe_error(exc)}; choose another "
                              "--output_dir or fix its permissions") from None
        try:
            fcntl.flock(self.lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.lock_file.seek(0)
            holder = self.lock_file.read().strip() or "another process"
            self.lock_file.close()
            raise OutputError(f"OUTPUT_DIR {self.root} is in use by {holder}; wait for that run to end or choose "
                              "another --output_dir") from None
        # The lock dies with its process (flock), so a stale lock of a killed run is simply taken over; a run
        # that ends empties the file, so a name left in it is a run that died.
        self.lock_file.seek(0)
        dead = self.lock_file.read().strip()
        if dead:
            self.log(f"took over OUTPUT_DIR from {dead}, which is no longer running")
        self.lock_file.seek(0)
        self.lock_file.truncate()
        self.lock_file.write(f"the run of process {os.getpid()} (started {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        self.lock_file.flush()
        self.migrate_flat_folder()
        self.clear_dead_runs()
        return self

    def __exit__(self, *exc):
        self.lock_file.truncate(0)
        self.lock_file.close()  # releases the flock
        return False

    # -- reading -----------------------------------------------------------
    def complete_runs(self) -> list[str]:
        """Ids of the complete runs, oldest first (the legacy folder first of all)."""
        names = [n for n in os.listdir(self.runs) if os.path.isdir(os.path.join(self.runs, n))]
        return sorted(n for n in names if n == LEGACY) + sorted((n for n in names if _RUN_ID.match(n)), key=run_order)

    def interrupted_runs(self) -> list[str]:
        """Ids of interrupted runs whose resume state is kept, oldest first."""
        names = [n[:-len(PARTIAL)] for n in os.listdir(self.runs) if n.endswith(PARTIAL)]
        return sorted((n for n in names if os.path.isfile(os.path.join(self.runs, n + PARTIAL, RESUME_NAME))),
                      key=run_order)

    def latest(self):
        """Id of the latest complete run, or None."""
        link = os.path.join(self.root, LATEST)
        if os.path.islink(link):
            return os.path.basename(os.readlink(link))
        if os.path.isfile(link):
            with open(link, encoding="utf-8") as f:
                return f.read().strip() or None
        return None

    def run_dir(self, name: str) -> str:
        """The folder of a complete run named by id, or by "latest"."""
        run_id = self.latest() if name == LATEST else name
        if run_id is None or not os.path.isdir(os.path.join(self.runs, run_id)):
            known = ", ".join(self.complete_runs()[-5:]) or "none"
            raise OutputError(f"OUTPUT_DIR {self.root} has no complete run {name!r}, so no checkpoint to reuse "
                              f"(complete runs: {known}); train first (TRAIN=True) or name one with --run")
        return os.path.join(self.runs, run_id)

    def resumable(self, name: str) -> str:
        """Id of the interrupted run to resume: the one named, or for "latest" the newest."""
        interrupted = self.interrupted_runs()
        run_id = (interrupted[-1] if interrupted else None) if name == LATEST else name
        if run_id not in interrupted:
            raise OutputError(f"--resume=True but OUTPUT_DIR {self.root} holds no interrupted run "
                              f"{'to continue' if name == LATEST else repr(name)} (interrupted runs: "
                              f"{', '.join(interrupted) or 'none'}); run without --resume")
        return run_id

    # -- writing -----------------------------------------------------------
    def start(self, run_id=None) -> str:
        """The folder a new run writes into (runs/<id>.partial), made now; run_id continues an interrupted run."""
        if run_id is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            # after every run of this second, even pruned ones, so ids always sort in the order runs started
            latest = max([run_order(n.removesuffix(PARTIAL)) for n in os.listdir(self.runs)
                          if _RUN_ID.match(n.removesuffix(PARTIAL))] + [(stamp, 0)])
            run_id = f"{stamp}-{latest[1] + 1 if latest[0] == stamp else 1}"
        self.run_id = run_id
        self.staging = os.path.join(self.runs, run_id + PARTIAL)
        try:
            os.makedirs(self.staging, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot write into OUTPUT_DIR {self.root}: {describe_error(exc)}") from None
        return self.staging

    def path(self, name: str) -> str:
        return os.path.join(self.staging, name)

    def check_free_space(self, needed_bytes: int):
        free = shutil.disk_usage(self.staging).free
        if free < needed_bytes:
            raise OutputError(f"OUTPUT_DIR {self.root} has {free / 1e6:.0f} MB free, and this run needs about "
                              f"{needed_bytes / 1e6:.0f} MB (checkpoint, resume state and figures); free some "
                              "space or choose another --output_dir")

    @contextlib.contextmanager
    def staged_run(self, run_id=None):
        """Stage a run (start()); if it is interrupted, keep only its resume state; if it fails, keep nothing."""
        self.start(run_id)
        try:
            yield self
        except KeyboardInterrupt:
            if self.keep_resume_state_only():
                self.log(f"the resume state stays in {RUNS}/{self.run_id}{PARTIAL}; continue this training with "
                         "--resume=True")
            raise
        except BaseException:
            self.discard()
            raise

    def partial_path(self, run_id: str, name: str) -> str:
        return os.path.join(self.runs, run_id + PARTIAL, name)

    def keep_resume_state_only(self):
        """After an interruption: the run's folder keeps its resume state (for --resume=True) and nothing else."""
        if not os.path.isfile(self.path(RESUME_NAME)):
            shutil.rmtree(self.staging, ignore_errors=True)
            return False
        for name in os.listdir(self.staging):
            if name != RESUME_NAME:
                remove(os.path.join(self.staging, name))
        return True

    def discard(self):
        """After a failure: nothing of this run stays."""
        shutil.rmtree(self.staging, ignore_errors=True)

    def publish(self) -> tuple[str, str]:
        """Make the staged run complete and the latest one; returns (its folder, the folder it replaced or "")."""
        remove(self.path(RESUME_NAME))
        previous = self.latest()
        final = os.path.join(self.runs, self.run_id)
        os.rename(self.staging, final)
        self.point_latest_at(self.run_id)
        self.prune()
        return final, os.path.join(self.runs, previous) if previous else ""

    def point_latest_at(self, run_id: str):
        names = sorted(os.listdir(os.path.join(self.runs, run_id)))
        latest = os.path.join(self.root, LATEST)
        try:
            for name in names:  # links through `latest`: they dangle until the switch, never show a mix
                link = os.path.join(self.root, name)
                if not os.path.islink(link) or os.readlink(link) != os.path.join(LATEST, name):
                    replace_with_symlink(os.path.join(LATEST, name), link)
            replace_with_symlink(os.path.join(RUNS, run_id), latest)  # the one atomic switch
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            self.copy_latest(run_id, names)
            return
        for name in os.listdir(self.root):  # names the new run did not write
            link = os.path.join(self.root, name)
            if os.path.islink(link) and os.readlink(link).startswith(LATEST + os.sep) and not os.path.exists(link):
                os.remove(link)

    def copy_latest(self, run_id, names):
        """No symlinks here: a pointer file, and each top-level file a copy replaced atomically."""
        for name in names:
            source = os.path.join(self.runs, run_id, name)
            if os.path.isfile(source):
                partial = os.path.join(self.root, f".{name}.copy")
                shutil.copyfile(source, partial)
                os.replace(partial, os.path.join(self.root, name))
        write_atomically(os.path.join(self.root, LATEST), run_id + "\n")
        for name in os.listdir(self.root):
            if os.path.isfile(os.path.join(self.root, name)) and not name.startswith(".") and name != LATEST \
                    and name not in names:
                os.remove(os.path.join(self.root, name))

    def prune(self):
        """Keep the newest keep_runs complete runs (and the legacy folder) and as many interrupted runs."""
        complete = [n for n in self.complete_runs() if n != LEGACY]
        for run_id in complete[:-self.keep_runs]:
            shutil.rmtree(os.path.join(self.runs, run_id), ignore_errors=True)
            self.log(f"removed the old run {RUNS}/{run_id} (KEEP_RUNS={self.keep_runs})")
        for run_id in self.interrupted_runs()[:-self.keep_runs]:
            shutil.rmtree(os.path.join(self.runs, run_id + PARTIAL), ignore_errors=True)
            self.log(f"removed the resume state of the old interrupted run {RUNS}/{run_id}{PARTIAL}")

    # -- housekeeping ------------------------------------------------------
    def clear_dead_runs(self):
        """Partial folders are dead once we hold the lock: keep only their resume states, remove the rest."""
        for name in sorted(os.listdir(self.runs)):
            folder = os.path.join(self.runs, name)
            if not name.endswith(PARTIAL) or not os.path.isdir(folder):
                continue
            leftovers = [n for n in os.listdir(folder) if n != RESUME_NAME]
            if os.path.isfile(os.path.join(folder, RESUME_NAME)):
                for leftover in leftovers:
                    remove(os.path.join(folder, leftover))
                if leftovers:
                    self.log(f"removed the files of a run that died from {RUNS}/{name}; its resume state is kept "
                             "for --resume=True")
            else:
                shutil.rmtree(folder, ignore_errors=True)
                self.log(f"removed the staging folder of a run that died: {RUNS}/{name}")
        self.prune()

    def migrate_flat_folder(self):
        """Move the files of an earlier, flat OUTPUT_DIR into runs/before-versioning/ (kept, never pruned)."""
        ours = {RUNS, LATEST, LOCK}
        flat = [n for n in os.listdir(self.root) if n not in ours and not n.startswith(".")
                and not os.path.islink(os.path.join(self.root, n)) and os.path.isfile(os.path.join(self.root, n))]
        if not flat or self.latest() is not None:
            return
        legacy = os.path.join(self.runs, LEGACY)
        os.makedirs(legacy, exist_ok=True)
        for name in flat:
            os.replace(os.path.join(self.root, name), os.path.join(legacy, name))
        self.log(f"moved {len(flat)} files of an earlier run into {RUNS}/{LEGACY}/ (kept)")
        self.point_latest_at(LEGACY)


def run_order(run_id: str):
    stamp, _, n = run_id.rpartition("-")
    return stamp, int(n)


def remove(path: str):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def replace_with_symlink(target: str, link: str):
    partial = f"{link}.{os.getpid()}.link"
    remove(partial)
    os.symlink(target, partial)
    os.replace(partial, link)


def write_atomically(path: str, text: str):
    partial = f"{path}.{os.getpid()}.partial"
    with open(partial, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(partial, path)
