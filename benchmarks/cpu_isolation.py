"""How much a CPU-hungry submission slows the grading beside it under `grade batch --jobs 2`.

Two grading processes of a LocalCluster, as the batch starts them: process 0 runs busy
processes (a stand-in for a submission running RLIMIT_NPROC busy threads), process 1 times a
fixed amount of torch work.  Printed: that time alone, beside the hog with each process on its
own CPUs (what the batch does), and beside the hog without CPU shares.

    python benchmarks/cpu_isolation.py
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def hog(seconds: float, processes: int) -> int:
    """Busy processes from this grading process (they inherit its CPUs)."""
    children = []
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:
            spin(seconds)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    return processes


def work(repeats: int = 5) -> float:
    import torch
    torch.set_num_threads(1)
    a = torch.randn(384, 384)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(40):
            a @ a
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(pinned: bool) -> tuple[float, float]:
    from distributed import Client, LocalCluster
    from runner.cpu_shares import PinCpus, cpu_slices
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=40)
    client = Client(cluster)
    try:
        if pinned:
            client.register_plugin(PinCpus(cpu_slices(2)))
        workers = sorted(client.scheduler_info()["workers"],
                         key=lambda w: client.scheduler_info()["workers"][w]["name"])
        alone = client.submit(work, workers=[workers[1]], pure=False).result()
        busy = client.submit(hog, 8.0, 2 * (os.cpu_count() or 1), workers=[workers[0]], pure=False)
        time.sleep(1.0)
        beside = client.submit(work, workers=[workers[1]], pure=False).result()
        busy.result()
        return alone, beside
    finally:
        client.close()
        cluster.close()


def main() -> None:
    print(f"CPUs: {len(os.sched_getaffinity(0))}")
    for pinned in (True, False):
        alone, beside = measure(pinned)
        label = "own CPU shares (grade batch)" if pinned else "no CPU shares"
        print(f"{label:30s} alone {alone * 1000:7.1f} ms   beside the hog {beside * 1000:7.1f} ms"
              f"   slowdown {beside / alone:5.2f}x")


if __name__ == "__main__":
    main()
