"""Select and Mask's edge controls (mattekit.edges): what each one does to a matte, on small arrays."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mattekit import config, edges
from mattekit import protocol as P
from synth import soft_disc


def transition(alpha: np.ndarray) -> int:
    """How many pixels are soft (strictly between 0.02 and 0.98): the width of the edge, in area."""
    return int(np.count_nonzero((alpha > 0.02) & (alpha < 0.98)))


def contour_radius(alpha: np.ndarray) -> float:
    """The radius of a centred disc's 0.5 contour, from its area (sub-pixel: soft pixels count by their distance past 0.5)."""
    return float(np.sqrt(np.count_nonzero(alpha >= 0.5) / np.pi))


def perimeter(alpha: np.ndarray) -> float:
    """The length of the 0.5 contour (the longest outer one), px."""
    contours, _ = cv2.findContours((alpha >= 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return max(cv2.arcLength(c, True) for c in contours)


def jagged_disc(h: int = 160, radius: float = 50.0, teeth: int = 40, depth: float = 5.0) -> np.ndarray:
    """A hard disc whose edge is a saw of ``teeth`` teeth, ``depth`` px deep (a jagged lasso)."""
    yy, xx = np.mgrid[:h, :h].astype(np.float32)
    r = np.hypot(yy - h / 2, xx - h / 2)
    theta = np.arctan2(yy - h / 2, xx - h / 2)
    edge = radius + depth * np.sign(np.sin(teeth * theta))
    return (r <= edge).astype(np.float32)


NONE = {"smooth": 0, "feather": 0, "contrast": 0, "shift_edge": 0}


@pytest.mark.parametrize("dtype_params", [NONE, {}, {"smooth": "0px", "feather": "0%", "shift_edge": 0.0, "contrast": 0.0}])
def test_all_controls_at_zero_return_the_alpha_bit_for_bit(dtype_params):
    rng = np.random.default_rng(0)
    alpha = rng.random((37, 53)).astype(np.float32)
    before = alpha.copy()
    out = edges.apply_edge_params(alpha, {**P.JOB_PARAMS, **dtype_params})
    assert out is alpha and np.array_equal(out.view(np.uint32), before.view(np.uint32))
    for fn in (edges.smooth, edges.feather, edges.shift_edge):
        assert fn(alpha, 0) is alpha
    assert edges.contrast(alpha, 0) is alpha


def test_feather_widens_the_transition_and_keeps_the_contour():
    _, alpha, _ = soft_disc(120, 120, 35, ramp=2)
    out = edges.feather(alpha, 4.0)
    assert out.dtype == np.float32 and out.shape == alpha.shape and 0 <= out.min() and out.max() <= 1
    assert transition(out) > 2 * transition(alpha)
    assert abs(contour_radius(out) - contour_radius(alpha)) < 1.0  # a symmetric blur of a gentle curve stays put
    # it is a Gaussian blur of that sigma
    ref = cv2.GaussianBlur(alpha, (0, 0), 4.0, borderType=cv2.BORDER_REPLICATE)
    assert np.abs(out - ref).max() < 1e-5


def test_a_wide_feather_on_a_reduced_copy_matches_the_full_resolution_blur():
    _, alpha, _ = soft_disc(300, 260, 90, ramp=1)
    sigma = 3 * edges.FEATHER_DIRECT_SIGMA
    out = edges.feather(alpha, sigma)
    ref = cv2.GaussianBlur(alpha, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    assert np.abs(out - ref).max() < 0.01


def test_contrast_narrows_the_transition_about_one_half():
    _, alpha, _ = soft_disc(120, 120, 35, ramp=12)
    half = edges.contrast(alpha, 50)
    assert transition(alpha) * 0.4 < transition(half) < transition(alpha) * 0.6  # 50 %: half as wide
    assert abs(contour_radius(half) - contour_radius(alpha)) < 0.5
    hard = edges.contrast(alpha, 100)
    assert set(np.unique(hard)) <= {0.0, 0.5, 1.0}
    assert np.array_equal(hard >= 0.5, alpha >= 0.5)


@pytest.mark.parametrize("px", [6, -6, 17, -17, 9.6, 40, -40])
def test_shift_edge_moves_the_half_contour_by_the_distance(px):
    for ramp in (1.0, 6.0):  # a hard and a soft edge
        _, alpha, _ = soft_disc(220, 220, 60, ramp=ramp)
        out = edges.shift_edge(alpha, px)
        assert abs(contour_radius(out) - contour_radius(alpha) - px) <= 1.0
        if ramp > 1:  # the soft profile is moved, not hardened or widened
            assert abs(transition(out) / transition(alpha) - (60 + px) / 60) < 0.15


def test_smooth_reduces_a_jagged_edge_without_moving_or_softening_it():
    alpha = jagged_disc()
    out = edges.smooth(alpha, 4)
    circle = 2 * np.pi * 50
    assert perimeter(alpha) > 1.5 * circle  # the saw is long
    assert perimeter(out) < 1.1 * circle  # smoothed to about the circle
    assert abs(contour_radius(out) - contour_radius(alpha)) < 1.0  # through the middle of the teeth
    assert transition(out) < 2 * transition(edges.feather(jagged_disc(), 1))  # still a hard edge, not a blur
    # a straight hard edge and a straight soft ramp keep their place and their softness
    straight = np.zeros((40, 60), np.float32)
    straight[:, 30:] = 1
    assert np.abs(edges.smooth(straight, 4) - straight).max() < 0.01
    ramp = np.tile(np.clip((np.arange(60, dtype=np.float32) - 30) / 8 + 0.5, 0, 1), (40, 1))
    assert edges.transition_width(ramp) == pytest.approx(8, rel=0.1)
    assert np.abs(edges.smooth(ramp, 4) - ramp).max() < 0.15  # only the ramp's two corners are rounded


@pytest.mark.parametrize("radius", [3, 13, 32, 45])
def test_disk_filter_is_a_disk_within_a_pixel(radius):
    """A single pixel dilated is the disk (both ways of computing it), and erosion undoes it."""
    size = 2 * radius + 9
    dot = np.zeros((size, size), np.float32)
    dot[size // 2, size // 2] = 1
    grown = edges.disk_filter(dot, radius, True)
    yy, xx = np.mgrid[:size, :size] - size // 2
    d = np.hypot(yy, xx)
    assert (grown[d <= radius - 1] >= 0.5).all() and (grown[d >= radius + 1] < 0.5).all()
    shrunk = edges.disk_filter(grown, radius, False)
    assert shrunk[size // 2, size // 2] >= 0.5 and np.count_nonzero(shrunk >= 0.5) <= 5


def test_strips_give_the_whole_frame_answer(monkeypatch):
    alpha = jagged_disc(120, 40, 25, 4)
    whole = {f: fn(alpha, 5) for f, fn in (("smooth", edges.smooth), ("feather", edges.feather), ("shift", edges.shift_edge))}
    width = edges.transition_width(alpha)
    monkeypatch.setattr(config, "STRIP_PX", 120 * 3)  # 3-row strips: each needs its context rows
    assert edges.transition_width(alpha) == pytest.approx(width, rel=1e-9)
    for f, fn in (("smooth", edges.smooth), ("feather", edges.feather), ("shift", edges.shift_edge)):
        assert np.array_equal(fn(alpha, 5), whole[f]), f


def test_apply_edge_params_resolves_percent_and_pixels_and_reports_progress():
    _, alpha, _ = soft_disc(100, 200, 30, ramp=1)  # short side 100: 5 % = 5 px
    by_percent = edges.apply_edge_params(alpha, {**NONE, "shift_edge": 5})
    assert np.array_equal(by_percent, edges.apply_edge_params(alpha, {**NONE, "shift_edge": "5px"}))
    assert np.array_equal(by_percent, edges.apply_edge_params(alpha, {**NONE, "shift_edge": "5%"}))
    assert np.array_equal(by_percent, edges.shift_edge(alpha, 5))
    seen: list[float] = []
    out = edges.apply_edge_params(alpha, {"smooth": 2, "feather": 1, "contrast": 30, "shift_edge": -2}, seen.append)
    assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    assert seen == sorted(seen) and seen[-1] == 1.0
