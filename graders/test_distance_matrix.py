"""Grader for distance_matrix (notes 003, exercise 1.5)."""
import torch

from graders import checks
from graders.checks import hint, points

# Broadcast-difference solutions are accurate to a few ulps; a centred
# Gram-matrix solution loses ~1e-6 relative at typical distances.  An
# uncentred one is off by whole units on data near 1e4.
ACCURACY = dict(rtol=2e-5, atol=2e-5)


def points_far_apart(rng, n, d, scale=3.0, offset=0.0, dtype=torch.float32):
    """Gaussian points; no two closer than ~0.1 * scale (so the truth is well conditioned)."""
    x = checks.randn(rng, n, d, scale=scale, dtype=torch.float64)
    return (x + offset).to(dtype)


@points(2)
def test_shapes_and_dtypes(student, rng, device):
    """Shapes (N, M), same dtype and device as the input"""
    x = points_far_apart(rng, 7, 5).to(device)
    y = points_far_apart(rng, 4, 5).to(device)
    checks.expect_tensor(student.pairwise_distances(x, y), what="pairwise_distances(x, y) for x (7, 5), y (4, 5)",
                         shape=(7, 4), dtype=torch.float32, device=device)
    checks.expect_tensor(student.pairwise_distances(x), what="pairwise_distances(x) for x (7, 5)",
                         shape=(7, 7), dtype=torch.float32, device=device)
    x64 = points_far_apart(rng, 3, 1, dtype=torch.float64).to(device)
    checks.expect_tensor(student.pairwise_distances(x64), what="pairwise_distances(x) for float64 x (3, 1)",
                         shape=(3, 3), dtype=torch.float64, device=device)


@points(3)
def test_matches_float64_truth(student, reference, rng, device):
    """Distances match a float64 computation"""
    x = points_far_apart(rng, 61, 8)
    y = points_far_apart(rng, 45, 8)
    truth = reference.pairwise_distances(x.double(), y.double())
    got = student.pairwise_distances(x.to(device), y.to(device))
    checks.assert_close(got, truth, dtype=torch.float32, what="pairwise_distances(x, y)", **ACCURACY)
    x64 = points_far_apart(rng, 20, 3, dtype=torch.float64)
    checks.assert_close(student.pairwise_distances(x64.to(device)), reference.pairwise_distances(x64),
                        what="pairwise_distances(x) in float64", ulps=64)


@points(3)
@hint("||x||^2 + ||y||^2 - 2 x.y cancels catastrophically when the data is far from the "
      "origin; subtract the mean of the points first (distances are translation invariant)")
def test_data_far_from_origin(student, reference, rng, device):
    """Accurate for data offset by 1e4"""
    x = points_far_apart(rng, 50, 16, offset=1e4)
    y = points_far_apart(rng, 40, 16, offset=1e4)
    truth = reference.pairwise_distances(x.double(), y.double())
    checks.assert_close(student.pairwise_distances(x.to(device), y.to(device)), truth,
                        dtype=torch.float32, what="pairwise_distances(x, y) for data near 1e4",
                        **ACCURACY)
    truth = reference.pairwise_distances(x.double())
    checks.assert_close(student.pairwise_distances(x.to(device)), truth, dtype=torch.float32,
                        what="pairwise_distances(x) for data near 1e4", **ACCURACY)


@points(2)
def test_zero_diagonal(student, rng, device):
    """The diagonal is exactly zero when y is None"""
    x = points_far_apart(rng, 300, 16, offset=5.0).to(device)
    d = checks.expect_tensor(student.pairwise_distances(x), what="pairwise_distances(x)", shape=(300, 300))
    diag = d.diagonal().abs()
    if diag.max() != 0:
        checks.fail(f"the diagonal of pairwise_distances(x) is not zero: max |d_ii| = {float(diag.max()):.2g} "
                    f"({int((diag != 0).sum())} of 300 entries nonzero)")


@points(2)
@hint("rounding can make a squared distance slightly negative; clamp it at zero before sqrt")
def test_no_nan_for_coincident_points(student, rng, device):
    """No NaN where points of x and y coincide"""
    y = points_far_apart(rng, 40, 6, offset=2.0)
    x = torch.cat([y[::2], points_far_apart(rng, 10, 6)])
    d = student.pairwise_distances(x.to(device), y.to(device))
    checks.expect_tensor(d, what="pairwise_distances(x, y)", shape=(30, 40))
    checks.assert_finite(d, what="pairwise_distances(x, y) with coinciding points")
    if (d < 0).any():
        checks.fail("pairwise_distances(x, y) has negative entries")


@points(3)
@hint("d/ds sqrt(s) is infinite at s = 0, and masking the result afterwards still gives "
      "0 * inf = NaN in backward; evaluate sqrt only where the squared distance is positive")
def test_gradient_at_zero_distance(student, reference, rng, device):
    """Gradients are finite and zero at zero distance"""
    x = points_far_apart(rng, 24, 5)
    g = checks.randn(rng, 24, 24)
    got = student.pairwise_distances.with_grad(g.to(device), wrt=[0])(x.to(device))
    want = reference.pairwise_distances.with_grad(g.double(), wrt=[0])(x.double())
    checks.assert_grads_close(got, want, what="pairwise_distances(x)", dtype=torch.float32,
                              ulps=256, atol_scale=10)


@points(2)
def test_gradcheck_float64(student, rng, device):
    """Backward agrees with finite differences (float64)"""
    x = points_far_apart(rng, 5, 3, dtype=torch.float64)
    y = points_far_apart(rng, 4, 3, dtype=torch.float64)
    checks.numerical_gradcheck(student.pairwise_distances, [x.to(device), y.to(device)],
                               what="pairwise_distances(x, y)", rng=rng)


@points(2)
@hint("use broadcasting: x.unsqueeze(1) - y.unsqueeze(0) has shape (N, M, D)")
def test_no_python_loops(student, submission, rng, device):
    """No Python loops or comprehensions"""
    x = points_far_apart(rng, 6, 2).to(device)
    checks.expect_tensor(student.pairwise_distances(x), what="pairwise_distances(x)", shape=(6, 6))
    checks.expect_tensor(student.nearest_neighbors(x), what="nearest_neighbors(x)", shape=(6,))
    checks.assert_no_loops(submission, "pairwise_distances")
    checks.assert_no_loops(submission, "nearest_neighbors")


def assert_nearest(got, x, reference, *, what):
    """Each got[i] must be another point at the minimal float64 distance from x[i]."""
    n = x.shape[0]
    checks.expect_tensor(got, what=what, shape=(n,), dtype=torch.int64)
    got = got.cpu()
    if ((got < 0) | (got >= n)).any():
        checks.fail(f"{what} has indices outside 0..{n - 1}")
    rows = torch.arange(n)
    if (got == rows).any():
        checks.fail(f"{what} returns the point itself as its nearest neighbour at "
                    f"{int((got == rows).sum())} of {n} positions")
    d = reference.pairwise_distances(x.double())
    d.fill_diagonal_(float("inf"))
    best = d.min(dim=1).values
    chosen = d[rows, got]
    wrong = chosen > best * (1 + 1e-6)
    if wrong.any():
        checks.fail(f"{what} is not the nearest other point at {int(wrong.sum())} of {n} positions "
                    f"(first at index {int(wrong.nonzero()[0])})")


@points(3)
@hint("a point is at distance 0 from itself: exclude the diagonal (e.g. fill it with +inf) "
      "before taking argmin")
def test_nearest_neighbors(student, reference, rng, device):
    """nearest_neighbors finds the nearest other point"""
    x = points_far_apart(rng, 200, 4)
    got = student.nearest_neighbors(x.to(device))
    checks.expect_tensor(got, what="nearest_neighbors(x)", shape=(200,), dtype=torch.int64, device=device)
    assert_nearest(got, x, reference, what="nearest_neighbors(x)")


@points(2)
@hint("torch.argmin returns the first of several equal minima; sorting or flipping may not")
def test_nearest_neighbors_ties_and_duplicates(student, reference, rng, device):
    """Ties go to the lowest index; a duplicate is its twin's nearest neighbour"""
    # 32 integer points (4x7 grid + 4 repeats): exact ties that survive any centring,
    # since the mean of 32 small integers is exact in binary floating point.
    grid = torch.stack(torch.meshgrid(torch.arange(4.0), torch.arange(7.0), indexing="ij"), -1).reshape(-1, 2)
    x = torch.cat([grid, grid[torch.randperm(28, generator=rng)[:4]]])
    x = x[torch.randperm(32, generator=rng)]
    got = student.nearest_neighbors(x.to(device))
    what = "nearest_neighbors(x) on a grid (many ties) with repeated points"
    assert_nearest(got, x, reference, what=what)
    checks.assert_equal(got, reference.nearest_neighbors(x.double()),
                        what=what + ": the lowest index among equally near points")


@points(2)
def test_speed(student, reference, rng, device, exercise, note):
    """At most 3x the reference's time at N=2048, D=16"""
    n, d = exercise.settings["speed_n"], exercise.settings["speed_d"]
    result = checks.measure_speed(
        student.pairwise_distances, reference.pairwise_distances,
        lambda i: (points_far_apart(rng, n, d).to(device),), repeats=5, warmup=1, device=device)

    def outputs_close(got, want):
        checks.assert_close(got, want, what="pairwise_distances(x) in the timed runs", **ACCURACY)

    # The Gram-matrix and cdist formulations are honestly 5-12x faster than the broadcast
    # reference on CPU (0.09x seen on a busy single core): flag only what no algorithm explains.
    note(checks.assert_speed(result, exercise.speed_budget, what="pairwise_distances",
                             outputs_close=outputs_close, flag_speedup=50.0))
