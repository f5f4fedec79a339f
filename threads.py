"""The threads and processes a run uses, chosen when it starts (train_explain.run) and said in its log.

torch's default is one thread per core. This project's models and batches are small, so a second thread
gains little, and when another program holds a core every parallel region waits for the thread that got
none (bench/speed.py measures both). So THREADS=0 (automatic) means one torch thread, unless
OMP_NUM_THREADS or MKL_NUM_THREADS say otherwise, and the other cores draw the figures (drawing.py)."""
import os

MAX_DRAWING_PROCESSES = 4  # about 30 figures a run: more processes than this only cost their start


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. under taskset or a container's cpuset)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def torch_threads(requested: int, current: int) -> tuple[int, str]:
    """(torch intra-op threads, why): `requested` when positive; else the count torch took from OMP_NUM_THREADS or
    MKL_NUM_THREADS when one is set (`current`, torch.get_num_threads()); else one."""
    if requested > 0:
        return requested, "THREADS"
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(name, "").strip():
            return current, name
    return 1, "automatic"


def drawing_processes(requested: int, cores: int) -> int:
    """Processes drawing figures beside the computation: `requested` when positive, else one per core up to
    MAX_DRAWING_PROCESSES; 1 draws in the run's own process."""
    return requested if requested > 0 else max(1, min(cores, MAX_DRAWING_PROCESSES))
