"""`grade verify` for every exercise: the graders themselves are right.

For each exercise: the reference scores full marks, the stub 0 with every test
"not implemented", each correct_*.py full marks, and each wrong_*.py (a mutant)
fails the tests it names, with the message it names.
"""
import pytest

from runner import exercises
from runner.grade import Options
from runner.verify import Case, cases, problems, verify_exercise


@pytest.mark.parametrize("name", exercises.names())
def test_exercise_verifies(name, reference_workers, warm_server):
    exercise = exercises.load(name)
    kinds = [c.kind for c in cases(exercise)]
    assert kinds.count("mutant") >= 4, "every grader needs at least four mutants"
    assert kinds.count("correct") >= 2, "every grader needs correct solutions in other styles"
    # Student workers forked warm, as `grade batch` and `grade verify` run them.
    options = Options(sandbox="required", reference_workers=reference_workers,
                      fork_server=warm_server)
    rows = verify_exercise(exercise, quick=True, options=options)
    bad = {case.label: found for case, _, found in rows if found}
    assert not bad, bad


def test_verify_catches_a_grader_that_passes_a_mutant(grade_file):
    """A 'mutant' that is really correct must be reported, not waved through."""
    exercise = exercises.load("distance_matrix")
    result = grade_file(exercise.reference, tests=["test_zero_diagonal"])
    case = Case("mutant", exercise.reference, ["test_zero_diagonal"], "diagonal")
    found = problems(case, result, {"test_zero_diagonal"})
    assert any("passed, but this mutant should fail it" in f for f in found)
    assert any("full marks" in f for f in found)


def test_verify_catches_a_stub_that_scores(grade_file):
    exercise = exercises.load("distance_matrix")
    result = grade_file(exercise.reference, tests=["test_zero_diagonal"])
    found = problems(Case("stub", exercise.stub), result, {"test_zero_diagonal"})
    assert any("expected not implemented" in f for f in found)
