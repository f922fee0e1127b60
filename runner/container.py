"""The judge inside the grading container (see Dockerfile.gpu).

    grade-entry --exercise NAME --submission /input/NAME.py [--seed N] [--device D] ...

Runs as the unprivileged ``grade-judge`` user with only the capabilities
needed to start and stop workers under the ``grade-student`` and
``grade-reference`` identities (setuid mode), grades the one submission, and
writes the result as a single JSON line, prefixed with ``RESULT_MARKER``, to
its own stdout.  That stream is the result channel: workers' output goes to
pipes the judge drains, and no worker identity can write to the judge's
file descriptors, so nothing a submission does can forge a result.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

RESULT_MARKER = "GRADE-RESULT "


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="grade-entry")
    parser.add_argument("--exercise", required=True)
    parser.add_argument("--submission", required=True)
    # The seed comes in the environment, not argv: other identities in the container can read
    # /proc/<pid>/cmdline of the judge, but not its environment.
    parser.add_argument("--seed", type=int, default=os.environ.get("GRADE_SEED"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--test", action="append", dest="tests")
    parser.add_argument("--overrides", default="{}", help="JSON: exercise fields to replace")
    args = parser.parse_args(argv)

    from . import exercises
    from .grade import Options, close_reference_workers, grade
    from .submission import UnusableSubmission, read

    try:
        submission = read(args.submission)
        exercise = exercises.load(args.exercise)
    except (UnusableSubmission, exercises.UnknownExercise) as e:
        sys.stdout.write(RESULT_MARKER + json.dumps({"error": str(e)}) + "\n")
        return 2
    options = Options(seed=args.seed, sandbox="setuid", device=args.device, tests=args.tests,
                      overrides=json.loads(args.overrides))
    try:
        result = grade(submission, exercise, options)
    finally:
        close_reference_workers(options)
    sys.stdout.write(RESULT_MARKER + json.dumps(result.to_dict(), allow_nan=False, default=str) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
