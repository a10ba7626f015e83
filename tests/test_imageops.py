import numpy as np
import pytest

from mattekit import imageops


def test_srgb_transfer_matches_standard_points_and_inverts():
    # Reference values from the IEC 61966-2-1 formulas evaluated in float64.
    enc = np.array([0.0, 0.02, 0.04045, 0.5, 1.0], np.float64)
    ref = np.where(enc <= 0.04045, enc / 12.92, ((enc + 0.055) / 1.055) ** 2.4)
    lin = imageops.srgb_to_linear(enc)
    assert lin.dtype == np.float32
    np.testing.assert_allclose(lin, ref, rtol=1e-6, atol=1e-9)
    assert lin[3] == pytest.approx(0.21404114, rel=1e-5)  # mid-grey 0.5 is ~21.4 % linear
    x = np.linspace(-0.2, 1.5, 1001, dtype=np.float32)
    np.testing.assert_allclose(imageops.linear_to_srgb(imageops.srgb_to_linear(x)), x, atol=2e-6)
    # continuous at the break point
    a, b = imageops.srgb_to_linear(np.float32([0.04045 - 1e-6, 0.04045 + 1e-6]))
    assert abs(a - b) < 1e-6


@pytest.mark.parametrize("dtype,maxv", [(np.uint8, 255), (np.uint16, 65535)])
def test_integer_round_trip_is_exact(dtype, maxv):
    ints = np.arange(0, maxv + 1, max(1, maxv // 4000), dtype=dtype)
    f = imageops.to_float(ints)
    assert f.dtype == np.float32 and f.min() == 0.0 and f.max() <= 1.0
    np.testing.assert_array_equal(imageops.from_float(f, dtype), ints)


def test_from_float_rounds_half_up_clips_and_handles_nan():
    x = np.array([-0.5, 0.0, 0.5 / 255, 0.49 / 255, 254.51 / 255, 1.0, 2.0, np.nan, np.inf], np.float32)
    np.testing.assert_array_equal(imageops.from_float(x, np.uint8), [0, 0, 1, 0, 255, 255, 255, 0, 255])


def test_float_dtypes_cast_without_rescaling():
    x = np.array([0.25, 1.5, -0.5], np.float16)
    f = imageops.to_float(x)
    assert f.dtype == np.float32
    np.testing.assert_array_equal(f, [0.25, 1.5, -0.5])
    assert imageops.from_float(f, np.float16).dtype == np.float16
    with pytest.raises(TypeError):
        imageops.to_float(np.zeros(3, np.int64))


def test_resize_shapes_and_mean_preservation():
    rng = np.random.default_rng(0)
    img = rng.random((40, 60, 3)).astype(np.float32)
    small = imageops.resize_area(img, (20, 30))
    assert small.shape == (20, 30, 3) and small.dtype == np.float32
    np.testing.assert_allclose(small.mean(axis=(0, 1)), img.mean(axis=(0, 1)), atol=1e-5)
    np.testing.assert_allclose(small[0, 0], img[:2, :2].mean(axis=(0, 1)), atol=1e-6)
    big = imageops.resize_linear(img[..., 0], (80, 120))
    assert big.shape == (80, 120)
    many = imageops.resize_linear(rng.random((8, 8, 6)).astype(np.float32), (16, 16))
    assert many.shape == (16, 16, 6)
    one = imageops.resize_area(rng.random((8, 8, 1)).astype(np.float32), (4, 4))
    assert one.shape == (4, 4, 1)


def test_finite_checks():
    assert imageops.is_finite(np.zeros(3, np.float32))
    assert imageops.is_finite(np.zeros(3, np.uint8))
    bad = np.array([0.0, np.nan, np.inf, -np.inf], np.float32)
    assert not imageops.is_finite(bad)
