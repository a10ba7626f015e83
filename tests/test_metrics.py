import numpy as np
import pytest

from mattekit_training import metrics as M


def step(h=20, w=30, col=15):
    a = np.zeros((h, w), np.float32)
    a[:, col:] = 1.0
    return a


def test_step_edge_shifted_by_one_pixel():
    gt, pred = step(), step(col=14)
    # one column of 20 pixels differs by exactly 1
    assert M.sad(pred, gt) == 20.0
    assert M.mse(pred, gt) == pytest.approx(20 / (20 * 30))
    assert M.mad(pred, gt) == pytest.approx(20 / (20 * 30))
    region = np.zeros_like(gt, bool)
    region[:, 10:20] = True
    assert M.mse(pred, gt, region) == pytest.approx(20 / (20 * 10))
    assert M.sad(pred, gt, ~region) == 0.0
    # Grad: |∇| of a shifted step is a shifted ridge; error > 0 and symmetric
    g = M.gradient_error(pred, gt)
    assert g > 0 and g == pytest.approx(M.gradient_error(gt, pred))
    # Conn by hand: the extra column is never in pred ∧ gt, so l = 0 there;
    # d_pred = 1 >= θ -> φ_pred = 0, d_gt = 0 -> φ_gt = 1. Elsewhere φ agree. Error = 20 × 1.
    assert M.connectivity_error(pred, gt) == pytest.approx(20.0)
    assert M.connectivity_error(gt, pred) == pytest.approx(20.0)


def test_identical_inputs_score_zero_and_differences_positive():
    rng = np.random.default_rng(0)
    gt = np.clip(rng.random((24, 24)) * 1.4 - 0.2, 0, 1).astype(np.float32)
    m = M.alpha_metrics(gt, gt, trimap=np.full(gt.shape, 0.5, np.float32))
    assert all(v == 0.0 for v in m.values())
    pred = np.clip(gt + rng.normal(0, 0.1, gt.shape), 0, 1)
    assert M.gradient_error(pred, gt) > 0
    assert M.connectivity_error(pred, gt) > 0
    assert M.gradient_error(pred, gt) == pytest.approx(M.gradient_error(gt, pred))


def test_gradient_kernel_is_dims():
    hx, hy = M.gaussian_gradient_kernels(1.4)
    assert hx.shape == (9, 9)  # halfsize = ceil(1.4 * sqrt(-2 ln(sqrt(2π) 1.4 0.01))) = ceil(3.62) = 4
    assert np.sum(hx**2) == pytest.approx(1.0)
    np.testing.assert_allclose(hx, -hx[:, ::-1])  # odd along x
    np.testing.assert_allclose(hy, hx.T)
    # a linear ramp along x has a constant x-gradient and zero y-gradient in the interior
    ramp = np.tile(np.linspace(0, 1, 40), (40, 1))
    gm = M.gradient_magnitude(ramp)[10:30, 10:30]
    assert gm.std() < 1e-9 and gm.mean() > 0


def test_connectivity_penalises_a_detached_blob():
    gt = np.zeros((30, 30), np.float32)
    gt[5:25, 5:15] = 1.0
    pred = gt.copy()
    pred[10:14, 20:24] = 0.8  # a floating island the GT does not have
    island = np.zeros_like(gt, bool)
    island[10:14, 20:24] = True
    c = M.connectivity_error(pred, gt)
    # l = 0 on the island (never in Ω), d_pred = 0.8 >= θ -> φ_pred = 0.2, φ_gt = 1: 16 × 0.8
    assert c == pytest.approx(16 * 0.8)
    assert M.connectivity_error(pred, gt, ~island) == 0.0


def test_regions_and_scaling():
    gt, pred = step(), step(col=14)
    tri = np.zeros_like(gt)
    tri[:, 15:] = 1.0
    tri[:, 13:17] = 0.5
    m = M.alpha_metrics(pred, gt, tri)
    assert m["sad"] == m["sad_t"] == 20.0 and m["sad_fg"] == m["sad_bg"] == 0.0
    assert m["mse_t"] == pytest.approx(20 / 80)
    s = M.scaled(m)
    assert s["sad_t"] == pytest.approx(0.02) and s["mse_t"] == pytest.approx(250.0)
    assert s["grad"] == pytest.approx(m["grad"] / 1000) and s["conn_t"] == pytest.approx(m["conn_t"] / 1000)


def test_foreground_metrics():
    alpha = np.zeros((4, 5), np.float32)
    alpha[:, 2:] = 0.5
    gt = np.full((4, 5, 3), 0.4, np.float32)
    pred = gt.copy()
    pred[..., 0] += 0.2  # off by 0.2 in red everywhere
    m = M.foreground_metrics(pred, gt, alpha)
    assert m["fg_sad"] == pytest.approx(12 * 0.2)  # 12 pixels with α > 0, one channel
    assert m["fg_mse"] == pytest.approx(0.04 / 3)
    assert m["afg_sad"] == pytest.approx(12 * 0.1)
    assert m["afg_mse"] == pytest.approx(12 * 0.01 / (20 * 3))
    assert all(v == 0 for v in M.foreground_metrics(gt, gt, alpha).values())


def test_iou_and_known_region_agreement():
    mask = step(10, 10, 5)
    alpha = step(10, 10, 6)
    assert M.iou(alpha, mask) == pytest.approx(40 / 50)
    assert M.iou(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    tri = np.full((10, 10), 0.5, np.float32)
    tri[:, :3] = 0.0
    tri[:, 8:] = 1.0
    assert M.known_region_agreement(alpha, tri) == 1.0
    wrong = alpha.copy()
    wrong[:, 0] = 1.0  # 10 of the 50 known pixels now disagree
    assert M.known_region_agreement(wrong, tri) == pytest.approx(40 / 50)
    km = M.known_region_metrics(wrong, tri)
    assert km["sad_known"] == 10.0 and km["mse_known"] == pytest.approx(10 / 50)
