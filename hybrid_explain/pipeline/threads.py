"""The threads and processes a run uses, chosen when it starts (train_explain.run) and said in its log.

torch's default is one thread per core, and OpenMP's threads spin while they wait for each other. When another
program holds a core, a spinning thread takes the time its partner needs, and every parallel region waits for
the thread that got none: measured in bench/speed.py, and on this project's small training batches it is
catastrophic (tens of times slower). So a run started as a script sets OMP_WAIT_POLICY=PASSIVE before torch
loads OpenMP (waiting threads sleep), unless the environment says otherwise, and THREADS=0 (automatic) means:

- training: one thread. Its batches are BATCH_SIZE rows (8): too little work per operation to share.
- explanations (batches of up to 1,024 rows): torch's default, one thread per core, where waiting threads sleep
  (OMP_WAIT_POLICY=PASSIVE); one thread where they spin.

OMP_NUM_THREADS or MKL_NUM_THREADS, when set, give the count torch took from them to both; THREADS=N gives N to
both. The other cores draw the figures (drawing.py)."""
import os

MAX_DRAWING_PROCESSES = 4  # about 30 figures a run: more processes than this only cost their start


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. under taskset or a container's cpuset)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def torch_threads(requested: int, default: int) -> tuple[int, int, str]:
    """(threads for training, threads for the explanations, why). default: torch.get_num_threads() before the
    run changed it (torch's own count, or what OMP_NUM_THREADS / MKL_NUM_THREADS set)."""
    if requested > 0:
        return requested, requested, "THREADS"
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(name, "").strip():
            return default, default, name
    sleeping = os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"
    return 1, default if sleeping else 1, "automatic"


def drawing_processes(requested: int, cores: int) -> int:
    """Processes drawing figures beside the computation: `requested` when positive, else one per core up to
    MAX_DRAWING_PROCESSES; 1 draws in the run's own process."""
    return requested if requested > 0 else max(1, min(cores, MAX_DRAWING_PROCESSES))
