"""The checks library: dtype-aware tolerances and messages that name the mistake."""
import pytest
import torch

from graders import checks


def test_one_ulp_in_float16_and_bfloat16_passes():
    for dtype in (torch.float16, torch.bfloat16):
        want = torch.linspace(-3, 3, 101, dtype=torch.float64)
        got = want.to(dtype)
        nudged = torch.nextafter(got, torch.full_like(got, 10))   # one ulp up
        checks.assert_close(nudged, want, dtype=dtype, what="x")


def test_float32_error_is_reported_without_expected_values():
    want = torch.tensor([1.0, 2.0, 123.456], dtype=torch.float64)
    got = want.float().clone()
    got[2] += 0.5
    with pytest.raises(checks.Failure) as e:
        checks.assert_close(got, want, dtype=torch.float32, what="the output")
    message = str(e.value)
    assert "1 of 3" in message and "index (2,)" in message and "0.5" in message
    assert "123.4" not in message


def test_nan_shape_dtype_and_type_messages():
    want = torch.ones(2, 3, dtype=torch.float64)
    with pytest.raises(checks.Failure, match="NaN or infinity at 1 of 6"):
        got = torch.ones(2, 3)
        got[1, 1] = float("nan")
        checks.assert_close(got, want, dtype=torch.float32, what="y")
    with pytest.raises(checks.Failure, match=r"shape \(3, 2\), expected \(2, 3\)"):
        checks.assert_close(torch.ones(3, 2), want, dtype=torch.float32, what="y")
    with pytest.raises(checks.Failure, match="dtype torch.float64, expected torch.float32"):
        checks.assert_close(want, want, dtype=torch.float32, what="y")
    with pytest.raises(checks.Failure, match="should be a torch.Tensor, got a list"):
        checks.assert_close([1.0], want, what="y")


def test_matching_infinities_and_equal_nan():
    want = torch.tensor([float("inf"), 1.0, float("nan")], dtype=torch.float64)
    checks.assert_close(want.clone(), want, what="y", equal_nan=True)
    with pytest.raises(checks.Failure):
        checks.assert_close(want.clone(), want, what="y", equal_nan=False)


def test_assert_equal_and_expect_tensor():
    checks.assert_equal(torch.tensor([1, 2]), torch.tensor([1, 2]), what="idx")
    with pytest.raises(checks.Failure, match="wrong at 1 of 2 positions"):
        checks.assert_equal(torch.tensor([1, 3]), torch.tensor([1, 2]), what="idx")
    with pytest.raises(checks.Failure, match="expected torch.int64"):
        checks.expect_tensor(torch.tensor([1, 2], dtype=torch.int32), what="idx", dtype=torch.int64)
