"""OUTPUT_DIR as a set of versioned runs, published atomically, one run at a time.

    OUTPUT_DIR/
      runs/20261201-104500-1/      a complete run: every file it wrote, and its marker (.train_explain_run)
      runs/20261201-110312-2/      the latest complete run
      runs/20261201-111500-3.partial/   a run in progress, or an interrupted one (only its resume state and its
                                        explained_rows/ parts kept)
      latest -> runs/20261201-110312-2  the one switch: replaced with os.replace, so it always names a whole run
      report.html -> latest/report.html, metrics.json -> latest/metrics.json, ...   one link per file of the run
      .lock                        held (flock) for the length of a run; names the process

Every top-level name goes through `latest`, so all of them change in the one atomic os.replace of `latest`:
a reader sees the old run or the new one, never a mix. A run is written inside OUTPUT_DIR (same filesystem
by construction), renamed from `<id>.partial` to `<id>` when complete, then made the latest. The newest
KEEP_RUNS complete runs, and the resume states of as many interrupted ones, are kept; older ones are removed.
Where the filesystem has no symlinks, `latest` is a one-line file naming the run (replaced atomically) and the
top-level files are copies, each replaced atomically (the set of them is not switched at once there).

What it never does, whatever it finds in OUTPUT_DIR (a link planted there, a copy, a user's files):
- follow a link it did not make when it writes, truncates, renames or deletes: entries are looked at with
  lstat, the lock is opened with O_NOFOLLOW, and a link or file where a folder of its own should be is left
  alone (one log line) or refused (one-line OutputError);
- delete what it cannot prove it wrote: it deletes only regular files inside a run folder that holds its marker
  (made with the folder), and top-level names that are its own links or copies of the latest run's files;
  anything else there (a sub-folder, a link) stays, with one log line;
- order runs by a clock: the last number of a run id is a sequence number, one more than any run id in the
  folder (under the lock), so runs prune oldest-first whatever the clock did, and the run just published is
  never pruned;
- write into a folder that is not its own: OUTPUT_DIR empty, "/", the home or the current folder, or a folder
  holding files it did not write, is a one-line OutputError. The one exception is the flat OUTPUT_DIR of an
  earlier version (only files with the names that version wrote): they are moved, unchanged, into
  runs/before-versioning/, which becomes the latest run and is never pruned.
"""
import contextlib
import errno
import fcntl
import filecmp
import os
import re
import shutil
import stat
import time

RUNS = "runs"
LATEST = "latest"
LOCK = ".lock"
PARTIAL = ".partial"
LEGACY = "before-versioning"
RESUME_NAME = "resume_state.pth"
MARKER = ".train_explain_run"  # made with each run folder, holding its id: the proof that its files are ours
# Every row explained in parts (pipeline/parts.py): the one sub-folder of a run, holding only files of these names
# (a part, the plan they follow, a part being written); the only other state an interrupted run keeps.
PARTS_DIR = "explained_rows"
PARTS_FILE = re.compile(r"^(part-\d{6}\.npz|plan\.json|\.part-\d{6}\.npz\.\d+\.tmp)$")
_RUN_ID = re.compile(r"^\d{8}-\d{6}-\d+$")
# The files the flat OUTPUT_DIR of the last version before runs held (commit e357850~1), by name: only these
# are ever moved.
_LEGACY_FILE = re.compile(r"^(saved_model_hybrid_explained\.pth|train_results_hybrid_explained\.csv"
                          r"|train_plots_hybrid_explained\.(eps|png)|confusion_matrix\.png|classification_report\.txt"
                          r"|shap_values\.npz|attributions\.npz|metrics\.json|report\.html"
                          r"|shap_summary_(bar|per_class)\.png"
                          r"|attribution_(comparison|faithfulness|overlay|regions|segments)\.png|misclassified_\d+\.png"
                          r"|(shap|gradcam|attention|attribution)_sample_\d+\.png)$")


class OutputError(ValueError):
    """OUTPUT_DIR cannot be used or written; the message is one line."""


def describe_error(exc: OSError) -> str:
    return f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")


def kind(path: str):
    """What the entry itself is (a link is a link, never what it points at): "link", "folder", "file", "other",
    or None when nothing is there."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    return ("link" if stat.S_ISLNK(mode) else "folder" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode)
            else "other")


def is_real_dir(path: str) -> bool:
    return kind(path) == "folder"


def is_real_file(path: str) -> bool:
    return kind(path) == "file"


def marked_id(folder: str):
    """The run id in a folder's marker, or None when it is not a real folder holding a marker with a run id (not
    ours)."""
    marker = os.path.join(folder, MARKER)
    if not is_real_dir(folder) or not is_real_file(marker):
        return None
    with open(marker, encoding="utf-8", errors="replace") as f:
        run_id = f.read(100).strip()
    return run_id if _RUN_ID.match(run_id) else None


def refused_root(given: str, root: str):
    """Why OUTPUT_DIR may not hold runs (a one-line reason), or None: never a folder that is not the program's
    own, so that nothing of a user's is written over, moved or deleted."""
    if not given.strip():
        return "OUTPUT_DIR is empty (an unset shell variable?); name a folder of its own, e.g. --output_dir=outputs"
    real = os.path.realpath(root)
    for place, path in (("the root folder", "/"), ("your home folder", os.path.expanduser("~")),
                        ("the current folder", os.getcwd())):
        if real == os.path.realpath(path):
            return (f"OUTPUT_DIR {root} is {place}, whose files are not this program's; name a folder of its own, "
                    f"e.g. --output_dir={os.path.join(given, 'outputs')}")
    if not is_real_dir(real) or os.path.lexists(os.path.join(real, LOCK)):
        return None  # a new folder, or one this program made (the lock file is its first write; open_lock checks it)
    foreign = sorted(n for n in os.listdir(real)
                     if not _LEGACY_FILE.match(n) or not is_real_file(os.path.join(real, n)))
    if foreign:
        return (f"OUTPUT_DIR {root} holds files this program did not write ({', '.join(map(repr, foreign[:3]))}"
                f"{f', … {len(foreign)} in all' if len(foreign) > 3 else ''}); name a new or empty folder")
    return None


class OutputFolder:
    """The versioned OUTPUT_DIR. Use as a context manager: entering takes the lock (or fails at once with the
    holder's pid), migrates an old flat folder and clears the leftovers of dead runs; leaving releases it."""

    def __init__(self, root: str, keep_runs: int = 5, log=print):
        self.given, self.root, self.keep_runs, self.log = root, os.path.abspath(root), keep_runs, log
        self.runs = os.path.join(self.root, RUNS)
        self.run_id = None

    # -- the lock ----------------------------------------------------------
    def __enter__(self):
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise OutputError(f"OUTPUT_DIR {self.root} is a file, not a folder; move it or choose another "
                              "--output_dir")
        reason = refused_root(self.given, self.root)
        if reason:
            raise OutputError(reason)
        self.lock_file = self.open_lock()
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
        self.repair_copied_latest(self.latest())
        self.clear_dead_runs()
        return self

    def open_lock(self):
        """OUTPUT_DIR/.lock, opened for reading and writing without following a link (a link there would make the
        lock's writes land in another file), after making OUTPUT_DIR and its runs folder."""
        try:
            os.makedirs(self.root, exist_ok=True)
            if os.path.lexists(self.runs) and not is_real_dir(self.runs):
                raise OutputError(f"OUTPUT_DIR {self.root}: {RUNS} is a link or a file, not a folder this program "
                                  "made; move it away or choose another --output_dir")
            os.makedirs(self.runs, exist_ok=True)
            fd = os.open(os.path.join(self.root, LOCK), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OutputError(f"OUTPUT_DIR {self.root}: {LOCK} is a link, which this program never writes "
                                  "through; remove the link or choose another --output_dir") from None
            raise OutputError(f"cannot write into OUTPUT_DIR {self.root}: {describe_error(exc)}; choose another "
                              "--output_dir or fix its permissions") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:  # a hard link: its writes would change another name
            os.close(fd)
            raise OutputError(f"OUTPUT_DIR {self.root}: {LOCK} is not a regular file of its own (a device, a pipe or "
                              "a file with other names); remove it or choose another --output_dir")
        return os.fdopen(fd, "r+", encoding="utf-8")

    def __exit__(self, *exc):
        self.lock_file.truncate(0)
        self.lock_file.close()  # releases the flock
        return False

    # -- reading -----------------------------------------------------------
    def complete_runs(self) -> list[str]:
        """Ids of the complete runs, oldest first: the legacy folder, runs of an earlier version (no marker) by id,
        then this version's by sequence number."""
        names = [n for n in os.listdir(self.runs) if is_real_dir(os.path.join(self.runs, n))]
        unmarked = sorted(n for n in names if _RUN_ID.match(n) and marked_id(os.path.join(self.runs, n)) is None)
        return [n for n in names if n == LEGACY] + unmarked + self.marked_runs()

    def marked_runs(self) -> list[str]:
        """Ids of the complete runs this version made (the ones it may prune), oldest first."""
        return sorted((n for n in os.listdir(self.runs) if _RUN_ID.match(n)
                       and marked_id(os.path.join(self.runs, n)) == n), key=sequence_number)

    def interrupted_runs(self) -> list[str]:
        """Ids of interrupted runs whose resume state (training's, or explained parts) is kept, oldest first."""
        names = [n[:-len(PARTIAL)] for n in os.listdir(self.runs) if n.endswith(PARTIAL)]
        return sorted((n for n in names if _RUN_ID.match(n) and marked_id(os.path.join(self.runs, n + PARTIAL)) == n
                       and has_resume_state(os.path.join(self.runs, n + PARTIAL))), key=sequence_number)

    def latest(self):
        """Id of the latest complete run, or None. `latest` is a link, a pointer file where there are no links,
        or, in a copy made by a tool that follows links, a copy of the run's folder (its marker names it)."""
        link = os.path.join(self.root, LATEST)
        what = kind(link)
        if what == "link":
            run_id = os.path.basename(os.readlink(link))
        elif what == "file":
            with open(link, encoding="utf-8", errors="replace") as f:
                run_id = f.read(100).strip()
        else:
            return marked_id(link) if what == "folder" else None
        return run_id if _RUN_ID.match(run_id) or run_id == LEGACY else None  # never a path out of runs/

    def run_dir(self, name: str) -> str:
        """The folder of a complete run named by id, or by "latest"."""
        run_id = self.latest() if name == LATEST else name
        if run_id is None or run_id not in self.complete_runs():
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
        # The resumed run writes into this folder: nothing there may lead its writes elsewhere (a link).
        folder = os.path.join(self.runs, run_id + PARTIAL)
        foreign = sorted(set(os.listdir(folder)) - {RESUME_NAME, MARKER, PARTS_DIR})
        parts = os.path.join(folder, PARTS_DIR)
        if os.path.lexists(parts):
            foreign += [f"{PARTS_DIR}/{n}" for n in own_parts_folder_names(parts)[1]] if is_real_dir(parts) else [PARTS_DIR]
        if foreign:
            raise OutputError(f"{RUNS}/{run_id}{PARTIAL} holds {', '.join(map(repr, foreign))}, which this program "
                              "did not write; move them away to resume, or run without --resume")
        return run_id

    # -- writing -----------------------------------------------------------
    def start(self, run_id=None) -> str:
        """The folder a new run writes into (runs/<id>.partial), made now with its marker; run_id continues an
        interrupted run (whose folder and marker exist)."""
        if run_id is None:
            run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{self.next_sequence_number()}"
        self.run_id = run_id
        self.staging = os.path.join(self.runs, run_id + PARTIAL)
        if not is_real_dir(self.staging):
            try:
                os.mkdir(self.staging)
                with open(os.path.join(self.staging, MARKER), "x", encoding="utf-8") as f:
                    f.write(run_id + "\n")
            except OSError as exc:
                raise OutputError(f"cannot write into OUTPUT_DIR {self.root}: {describe_error(exc)}") from None
        return self.staging

    def next_sequence_number(self) -> int:
        """One more than the last number of every run id in runs/ (complete, interrupted, or an earlier
        version's): the order in which runs started, whatever the clock says, and never an id already there."""
        return 1 + max([sequence_number(n.removesuffix(PARTIAL)) for n in os.listdir(self.runs)
                        if _RUN_ID.match(n.removesuffix(PARTIAL))] + [0])

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
                self.log(f"the resume state stays in {RUNS}/{self.run_id}{PARTIAL}; continue this run with "
                         "--resume=True")
            raise
        except BaseException:
            self.remove_run_folder(self.staging)
            raise

    def partial_path(self, run_id: str, name: str) -> str:
        return os.path.join(self.runs, run_id + PARTIAL, name)

    def keep_resume_state_only(self) -> bool:
        """After an interruption: the run's folder keeps its resume state (training's, and the parts explained so
        far, for --resume=True) and nothing else of its own; False (and the folder removed) when it has none."""
        if not has_resume_state(self.staging):
            self.remove_run_folder(self.staging)
            return False
        self.remove_own_files(self.staging, keep=(RESUME_NAME, MARKER, PARTS_DIR))
        return True

    def remove_own_files(self, folder: str, keep=()) -> list[str]:
        """Remove the regular files in a folder of ours (its marker checked by the caller) but `keep`, and return
        their names; what this program does not make there (a sub-folder, a link) stays, with a log line."""
        names = [n for n in sorted(os.listdir(folder)) if n not in keep]
        own = [n for n in names if is_real_file(os.path.join(folder, n))]
        for name in own:
            remove(os.path.join(folder, name))
        if PARTS_DIR in names and is_real_dir(os.path.join(folder, PARTS_DIR)):  # the parts, if only ours are there
            parts = os.path.join(folder, PARTS_DIR)
            for name in own_parts_folder_names(parts)[0]:
                remove(os.path.join(parts, name))
            if not os.listdir(parts):
                os.rmdir(parts)
                own.append(PARTS_DIR)
        foreign = [n for n in names if n not in own]
        if foreign:
            self.log(f"left {', '.join(map(repr, foreign))} in {os.path.relpath(folder, self.root)}: not written by "
                     "this program, so not removed")
        return own

    def remove_run_folder(self, folder: str) -> None:
        """Remove a run folder of ours: its files, its marker, and the folder itself unless something this program
        did not make stays in it (the folder, without its marker, is then left to its owner)."""
        if marked_id(folder) is None:
            return
        self.remove_own_files(folder, keep=(MARKER,))
        remove(os.path.join(folder, MARKER))
        if not os.listdir(folder):
            os.rmdir(folder)

    def publish(self) -> tuple[str, str]:
        """Make the staged run complete and the latest one; returns (its folder, the folder it replaced or "")."""
        remove(self.path(RESUME_NAME))
        previous = self.latest()
        final = os.path.join(self.runs, self.run_id)
        os.rename(self.staging, final)
        self.point_latest_at(self.run_id, previous)
        self.prune()
        return final, os.path.join(self.runs, previous) if previous else ""

    def ours_at_top(self, name: str, previous) -> bool:
        """Whether the top-level entry `name` may be replaced or removed: nothing there, a link this program made
        through `latest`, or a copy of the previous latest run's file (made where there are no symlinks, or by a
        tool that copied OUTPUT_DIR following links)."""
        path = os.path.join(self.root, name)
        what = kind(path)
        if what is None:
            return True
        if what == "link":
            return os.readlink(path) == os.path.join(LATEST, name)
        own = os.path.join(self.runs, previous, name) if previous else None
        return what == "file" and own is not None and is_real_file(own) and filecmp.cmp(path, own, shallow=False)

    def point_latest_at(self, run_id: str, previous=None):
        names = run_files(os.path.join(self.runs, run_id))
        mine = [name for name in names if self.ours_at_top(name, previous)]
        for name in sorted(set(names) - set(mine)):
            self.log(f"left OUTPUT_DIR/{name} as it is: not a link or copy this program made; this run's file is "
                     f"{RUNS}/{run_id}/{name}")
        latest = os.path.join(self.root, LATEST)
        try:
            for name in mine:  # links through `latest`: they dangle until the switch, never show a mix
                link = os.path.join(self.root, name)
                if kind(link) != "link" or os.readlink(link) != os.path.join(LATEST, name):
                    replace_with_symlink(os.path.join(LATEST, name), link)
            replace_with_symlink(os.path.join(RUNS, run_id), latest)  # the one atomic switch
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            self.copy_latest(run_id, mine, previous)
            return
        self.remove_stale_names(names, previous)

    def remove_stale_names(self, names, previous):
        """After the switch, the top-level names the new run did not write: this program's links (dangling now)
        and copies of the previous run's files."""
        for name in os.listdir(self.root):
            path = os.path.join(self.root, name)
            dangling = (kind(path) == "link" and os.readlink(path) == os.path.join(LATEST, name)
                        and not os.path.exists(path))
            if dangling or (name not in names and kind(path) == "file" and name not in (LATEST, LOCK)
                            and self.ours_at_top(name, previous)):
                os.remove(path)

    def repair_copied_latest(self, previous):
        """A `latest` that is a folder is a copy of the run `previous` (a tool that copies following links made
        it): removed, after checking that each of its files is that run's, and the links made again."""
        latest = os.path.join(self.root, LATEST)
        if kind(latest) != "folder":
            return
        own = os.path.join(self.runs, previous) if previous else None
        names = os.listdir(latest)
        if own is None or not is_real_dir(own) or not all(
                is_real_file(os.path.join(latest, n)) and is_real_file(os.path.join(own, n))
                and filecmp.cmp(os.path.join(latest, n), os.path.join(own, n), shallow=False) for n in names):
            raise OutputError(f"OUTPUT_DIR {self.root}: {LATEST} is a folder that is not a copy of a run of this "
                              "program; move it away or choose another --output_dir")
        for name in names:
            os.remove(os.path.join(latest, name))
        os.rmdir(latest)
        self.point_latest_at(previous, previous)  # the top-level copies of its files become links again
        self.log(f"OUTPUT_DIR was copied following its links ({LATEST} was a copy of {RUNS}/{previous}): made "
                 f"{LATEST} and the top-level names links again")

    def copy_latest(self, run_id, names, previous):
        """No symlinks here: a pointer file, and each top-level file a copy replaced atomically."""
        for name in names:
            partial = os.path.join(self.root, f".{name}.copy")
            shutil.copyfile(os.path.join(self.runs, run_id, name), partial)
            os.replace(partial, os.path.join(self.root, name))
        write_atomically(os.path.join(self.root, LATEST), run_id + "\n")
        self.remove_stale_names(names, previous)

    def prune(self):
        """Keep the newest keep_runs complete runs of this version (and the legacy folder, and runs of an earlier
        version, which this one cannot prove it wrote) and as many interrupted runs; never the run just made."""
        for run_id in self.marked_runs()[:-self.keep_runs]:
            if run_id != self.run_id:  # a resumed run is published with the sequence number it started with
                self.remove_run_folder(os.path.join(self.runs, run_id))
                self.log(f"removed the old run {RUNS}/{run_id} (KEEP_RUNS={self.keep_runs})")
        for run_id in self.interrupted_runs()[:-self.keep_runs]:
            self.remove_run_folder(os.path.join(self.runs, run_id + PARTIAL))
            self.log(f"removed the resume state of the old interrupted run {RUNS}/{run_id}{PARTIAL}")

    # -- housekeeping ------------------------------------------------------
    def clear_dead_runs(self):
        """Partial folders are dead once we hold the lock: keep only their resume states, remove the rest of what
        they wrote; an entry that is not a folder of ours (a link, a file, a folder without the marker) is left."""
        for name in sorted(os.listdir(self.runs)):
            folder = os.path.join(self.runs, name)
            if not name.endswith(PARTIAL):
                continue
            if marked_id(folder) != name.removesuffix(PARTIAL):
                self.log(f"left {RUNS}/{name} as it is: not a run folder this program made (a link, a file or a "
                         "folder without its marker)")
            elif has_resume_state(folder):
                if self.remove_own_files(folder, keep=(RESUME_NAME, MARKER, PARTS_DIR)):
                    self.log(f"removed the files of a run that died from {RUNS}/{name}; its resume state is kept "
                             "for --resume=True")
            else:
                self.remove_run_folder(folder)
                self.log(f"removed the staging folder of a run that died: {RUNS}/{name}")
        self.prune()

    def migrate_flat_folder(self):
        """Move the files of an earlier, flat OUTPUT_DIR (refused_root has checked that they bear its names) into
        runs/before-versioning/ (kept, never pruned)."""
        flat = [n for n in os.listdir(self.root) if _LEGACY_FILE.match(n) and is_real_file(os.path.join(self.root, n))]
        if not flat or self.latest() is not None or os.path.lexists(os.path.join(self.runs, LEGACY)):
            return
        legacy = os.path.join(self.runs, LEGACY)
        os.mkdir(legacy)
        for name in flat:
            os.replace(os.path.join(self.root, name), os.path.join(legacy, name))
        self.log(f"moved {len(flat)} files of an earlier run into {RUNS}/{LEGACY}/ (kept)")
        self.point_latest_at(LEGACY)


def run_files(folder: str) -> list[str]:
    """The files of a run that the top level shows: all but its marker (its parts folder is reached through
    OUTPUT_DIR/latest/explained_rows)."""
    return sorted(n for n in os.listdir(folder) if n != MARKER and n != PARTS_DIR)


def own_parts_folder_names(parts: str) -> tuple[list[str], list[str]]:
    """(the names in a parts folder that are ours: regular files named as parts.py names them, the others)."""
    names = sorted(os.listdir(parts))
    own = [n for n in names if PARTS_FILE.match(n) and is_real_file(os.path.join(parts, n))]
    return own, [n for n in names if n not in own]


def has_resume_state(folder: str) -> bool:
    """Whether an interrupted run's folder holds what --resume=True continues from: training's resume state, or a
    part of explained rows."""
    parts = os.path.join(folder, PARTS_DIR)
    return is_real_file(os.path.join(folder, RESUME_NAME)) or (
        is_real_dir(parts) and any(n.startswith("part-") for n in own_parts_folder_names(parts)[0]))


def sequence_number(run_id: str) -> int:
    return int(run_id.rpartition("-")[2])


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
