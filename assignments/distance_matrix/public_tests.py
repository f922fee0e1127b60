"""Public tests for distance_matrix.py: run ``python -m pytest public_tests.py`` next to it.

A few checks of the contract in the docstrings, against PyTorch's own ``torch.cdist``.
Passing them does not mean full marks: the grader checks more (see the docstrings).
"""
import pytest
import torch

from distance_matrix import nearest_neighbors, pairwise_distances


def points(n, d, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_values_match_cdist(dtype):
    x, y = points(7, 3, dtype, seed=1), points(5, 3, dtype, seed=2)
    d = pairwise_distances(x, y)
    assert d.shape == (7, 5)
    assert d.dtype == dtype
    expected = torch.cdist(x.double(), y.double())
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(d.double(), expected, rtol=rtol, atol=rtol)


def test_y_none_means_x_and_zero_diagonal():
    x = points(6, 4)
    d = pairwise_distances(x)
    assert d.shape == (6, 6)
    torch.testing.assert_close(d, torch.cdist(x, x), rtol=1e-12, atol=1e-12)
    assert torch.equal(d.diagonal(), torch.zeros(6, dtype=x.dtype))


def test_far_from_origin_float32():
    # Every coordinate near 1e4: ||x||^2 + ||y||^2 - 2 x.y without centring loses everything here.
    x = points(8, 16, torch.float32, seed=3) + 1e4
    y = points(6, 16, torch.float32, seed=4) + 1e4
    d = pairwise_distances(x, y)
    torch.testing.assert_close(d.double(), torch.cdist(x.double(), y.double()), rtol=1e-4, atol=1e-4)


def test_coincident_points_no_nan_and_zero_gradient():
    x = points(4, 3)
    x = torch.cat([x, x[:1]]).requires_grad_()   # row 4 repeats row 0
    d = pairwise_distances(x)
    assert not torch.isnan(d).any()
    assert d[0, 4] == 0 and d[4, 0] == 0
    d.sum().backward()
    assert torch.isfinite(x.grad).all()

    # Distance zero -> gradient zero (as torch.cdist does).
    a = points(3, 2).requires_grad_()
    (grad,) = torch.autograd.grad(pairwise_distances(a, a.detach().clone()).diagonal().sum(), a)
    assert torch.equal(grad, torch.zeros_like(grad))


def test_gradcheck_float64():
    x = points(4, 3, seed=5).requires_grad_()
    y = points(3, 3, seed=6).requires_grad_()
    assert torch.autograd.gradcheck(pairwise_distances, (x, y))


def test_nearest_neighbors_matches_brute_force():
    x = points(10, 3, seed=7)
    nn_idx = nearest_neighbors(x)
    assert nn_idx.shape == (10,) and nn_idx.dtype == torch.int64
    others = torch.cdist(x, x) + torch.diag(torch.full((10,), float("inf"), dtype=x.dtype))
    assert torch.equal(nn_idx, others.argmin(dim=1))


def test_nearest_neighbors_duplicates_and_ties():
    x = torch.tensor([[0.0], [1.0], [-1.0], [5.0], [5.0]])
    # row 0: rows 1 and 2 are equally near -> lowest index; rows 3 and 4 are each other's duplicate
    assert nearest_neighbors(x).tolist() == [1, 0, 0, 4, 3]
