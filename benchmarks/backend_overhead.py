"""Per-submission overhead of the docker backend beside the local (bubblewrap) backend.

    python3 benchmarks/backend_overhead.py [--repeats 5] [--exercise distance_matrix] [--test NAME]

Grades the exercise's reference with one cheap test, several times on each
backend, alternating, and prints the median wall time per submission, the
time the tests themselves took (the compute floor), and the overhead above
it.  Also times a bare `docker run` of the image.  Needs Docker and the image
(`grade image build`) for the docker column.
"""
import argparse
import statistics
import subprocess
import time

from runner import exercises
from runner.docker_backend import IMAGE, client, grade_in_container
from runner.grade import Options, close_reference_workers, grade
from runner.submission import read


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--exercise", default="distance_matrix")
    ap.add_argument("--test", default="test_shapes_and_dtypes")
    args = ap.parse_args()
    exercise = exercises.load(args.exercise)
    submission = read(exercise.reference)
    dc = client()
    rows = {"local (fresh workers)": [], "docker (fresh container)": []}
    floors = {k: [] for k in rows}
    for i in range(args.repeats):
        for name in rows:
            started = time.perf_counter()
            if name.startswith("local"):
                options = Options(seed=i, sandbox="auto", tests=[args.test])
                try:
                    result = grade(submission, exercise, options)
                finally:
                    close_reference_workers(options)
            else:
                result = grade_in_container(submission, exercise, seed=i, tests=[args.test], docker_client=dc)
            rows[name].append(time.perf_counter() - started)
            floors[name].append(sum(t.duration for t in result.tests))
            assert result.score == result.max_score
    bare = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "true", IMAGE], check=True)
        bare.append(time.perf_counter() - started)
    print(f"{args.exercise}/{args.test}, {args.repeats} repeats, medians:")
    print(f"{'backend':28} {'per submission':>15} {'tests':>8} {'overhead':>9}")
    for name, walls in rows.items():
        wall, floor = statistics.median(walls), statistics.median(floors[name])
        print(f"{name:28} {wall:14.2f}s {floor:7.2f}s {wall - floor:8.2f}s")
    print(f"bare `docker run --rm` of the image: {statistics.median(bare):.2f}s")
    extra = statistics.median(rows["docker (fresh container)"]) - statistics.median(rows["local (fresh workers)"])
    print(f"container overhead beside the local backend: {extra:+.2f}s per submission")


if __name__ == "__main__":
    main()
