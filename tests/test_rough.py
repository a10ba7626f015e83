"""The rough-selection stage (#31): a loose lasso, a rectangle or several blobs -> the subject they mean."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mattekit import protocol as P
from mattekit import rough
from mattekit.engine import Engine


def scene(h: int = 240, w: int = 320, seed: int = 0, centres=((120, 160),), radius: int = 50):
    """A textured two-tone background with solid, differently coloured discs: image, true mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    bg = np.stack([0.35 + 0.1 * np.sin(xx / 7.0), 0.55 + 0.1 * np.cos(yy / 5.0), 0.3 + 0 * xx], -1)
    bg += rng.normal(0, 0.03, bg.shape)
    mask = np.zeros((h, w), np.float32)
    for cy, cx in centres:
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = 1
    fg = np.stack([0.85 + 0 * xx, 0.25 + 0.05 * np.sin(xx / 3.0), 0.2 + 0 * xx], -1) + rng.normal(0, 0.02, bg.shape)
    image = np.clip(mask[..., None] * fg + (1 - mask[..., None]) * bg, 0, 1).astype(np.float32)
    return image, mask


def iou(a, b):
    a, b = a >= 0.5, b >= 0.5
    return (a & b).sum() / max(1, (a | b).sum())


def grown(mask, r):
    return cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))).astype(np.float32)


def test_a_loose_lasso_comes_back_on_the_subjects_edge():
    image, mask = scene()
    lasso = grown(mask, 25)  # 10 % of the short side outside the subject
    found = rough.find_subject(image, lasso, band_px=8)
    assert found.kind == "lasso" and found.moved_px > 10
    assert iou(lasso, mask) < 0.7 < 0.95 < iou(found.mask, mask)


def test_a_lasso_that_cuts_into_the_subject_grows_back_out():
    image, mask = scene()
    cut = mask.copy()
    cut[:, 200:] = 0  # the lasso passed 6 px (2.5 % of the short side) inside the subject's right side
    found = rough.find_subject(image, grown(cut, 4), band_px=8)
    assert found.kind == "tight" and found.disputed[120, 205]  # drawn near the edge: the cut-off part is in dispute
    out = _job("refine", {"band_px": 8}, image, grown(cut, 4))
    alpha = out.buffers["alpha"][1].reshape(mask.shape) / 255
    assert alpha[120, 205] > 0.5  # ... and the band solve selects it again
    assert iou(alpha, mask) > 0.95 > iou(grown(cut, 4), mask)


def test_a_rectangle_means_the_object_inside_it():
    image, mask = scene()
    box = rough.box_mask(mask.shape, (95, 55, 130, 130))
    found = rough.find_subject(image, box, band_px=8)
    assert found.kind == "box"
    assert iou(box, mask) < 0.5 and iou(found.mask, mask) > 0.95


def test_a_tight_selection_is_kept_as_drawn():
    image, mask = scene()
    found = rough.find_subject(image, mask, band_px=8)
    assert found.kind == "tight" and np.array_equal(found.mask, mask)


def test_separate_blobs_are_separate_objects():
    image, mask = scene(240, 400, centres=((120, 90), (120, 300)), radius=45)
    found = rough.find_subject(image, grown(mask, 20), band_px=8)
    assert found.blobs == 2 and iou(found.mask, mask) > 0.93
    assert found.mask[120, 195] == 0  # the background between them is not selected


def test_the_same_selection_gives_the_same_answer():
    image, mask = scene(seed=3)
    a = rough.find_subject(image, grown(mask, 20), band_px=8).mask
    b = rough.find_subject(image, grown(mask, 20), band_px=8).mask
    assert np.array_equal(a, b)


def test_progress_is_reported_and_a_raise_from_it_cancels():
    image, mask = scene()
    seen = []
    rough.find_subject(image, grown(mask, 20), band_px=8, progress=seen.append)
    assert seen and seen == sorted(seen) and seen[-1] == 1.0

    class Stop(Exception):
        pass

    def stop(f):
        raise Stop

    with pytest.raises(Stop):
        rough.find_subject(image, grown(mask, 20), band_px=8, progress=stop)


def test_empty_selection_and_bad_boxes_are_refused_with_a_reason():
    image, mask = scene()
    with pytest.raises(ValueError, match="empty"):
        rough.find_subject(image, np.zeros_like(mask), band_px=8)
    with pytest.raises(ValueError, match="no area"):
        rough.box_mask(mask.shape, (10, 10, 0, 5))
    with pytest.raises(ValueError, match="outside"):
        rough.box_mask(mask.shape, (300, 10, 40, 5))


def _buffers(image, guidance=None):
    """(specs, inputs) of an 8-bit image and optional guidance, as the daemon receives them."""
    specs, inputs = [], {}
    s, a = P.buffer_from_array("image", np.ascontiguousarray(np.round(image * 255).astype(np.uint8)))
    specs.append(s)
    inputs["image"] = a
    if guidance is not None:
        sg, g = P.buffer_from_array("guidance", np.round(guidance * 255).astype(np.uint8), order="Y")
        specs.append(sg)
        inputs["guidance"] = g
    return specs, inputs


def _job(op, params, image, guidance=None):
    specs, inputs = _buffers(image, guidance)
    p = P.check_job(op, params, specs)
    return Engine(learned=False).run(op, p, inputs, specs, lambda *a, **k: None)


def test_refine_with_a_box_parameter_finds_the_object_through_the_engine():
    image, mask = scene()
    out = _job("refine", {"box": [95, 55, 130, 130]}, image)
    alpha = out.buffers["alpha"][1].reshape(mask.shape) / 255
    assert out.meta["selection"]["read_as"] == "box" and iou(alpha, mask) > 0.95


def test_refine_of_an_empty_selection_is_a_protocol_error():
    image, mask = scene()
    with pytest.raises(P.ProtocolError, match="selects nothing"):
        _job("refine", {}, image, np.zeros_like(mask))


@pytest.mark.parametrize("box, message", [([0, 0, 0, 10], "no area"), ([300, 200, 50, 50], "outside"),
                                          ([1, 2, 3], "four integers"), ([1.5, 2, 3, 4], "four integers")])
def test_bad_boxes_are_protocol_errors(box, message):
    image, _ = scene()
    with pytest.raises(P.ProtocolError, match=message):
        _job("refine", {"box": box}, image)


def test_refine_needs_guidance_or_a_box():
    image, _ = scene()
    with pytest.raises(P.ProtocolError, match="neither"):
        _job("refine", {}, image)


class _RedFinder:
    """A stand-in subject model that records what it was shown: alpha = how red each pixel is."""

    def __init__(self):
        self.shown = []

    def predict(self, image, guidance=None):
        self.shown.append(image.shape[:2])
        return np.clip((image[..., 0] - image[..., 1] - 0.2) * 3, 0, 1).astype(np.float32)


def _select_with(monkeypatch, params, image, guidance=None):
    finder = _RedFinder()
    choose = Engine.choose_method
    monkeypatch.setattr(Engine, "choose_method", lambda self, task, name: "red" if task == "trimap_free" else choose(self, task, name))
    monkeypatch.setattr(Engine, "runtime", lambda self, name, device: finder)
    previews = []
    specs, inputs = _buffers(image, guidance)
    p = P.check_job("select_subject", {"preview": True, **params}, specs)
    out = Engine(learned=False).run("select_subject", p, inputs, specs,
                                    lambda stage, f, **k: previews.append(k["frames"][0].shape) if stage == "preview" else None)
    return out.buffers["alpha"][1].reshape(image.shape[:2]) / 255, finder.shown, previews, out.meta


def test_select_subject_in_a_box_runs_the_subject_model_on_the_boxs_crop(monkeypatch):
    """Select Subject with a rectangle: the model sees the box (5 % margin), not the frame, and only
    the object inside the box comes back; the preview still covers the whole frame."""
    image, mask = scene(centres=((120, 90), (120, 240)), radius=40)
    left = mask.copy()
    left[:, 165:] = 0
    alpha, shown, previews, meta = _select_with(monkeypatch, {"box": [40, 70, 100, 100]}, image)
    assert shown == [(110, 110)] and meta["crop"] == [35, 65, 110, 110]
    assert iou(alpha, left) > 0.95 and not alpha[:, 165:].any()
    assert len(previews) == 1 and previews[0][:2] == (240, 320)
    whole, shown, _, meta = _select_with(monkeypatch, {}, image)
    assert shown == [(240, 320)] and "crop" not in meta and iou(whole, mask) > 0.95  # no selection: the frame


def test_select_subject_in_a_lasso_finds_the_subject_inside_it(monkeypatch):
    image, mask = scene(centres=((120, 90), (120, 240)), radius=40)
    lasso = grown(np.where(np.arange(320)[None, :] > 165, mask, 0), 20)  # a loose lasso around the right disc
    alpha, shown, _, meta = _select_with(monkeypatch, {}, image, lasso)
    x, y, w, h = meta["crop"]
    assert shown == [(h, w)] and x > 150
    right = np.where(np.arange(320)[None, :] > 165, mask, 0)
    assert iou(alpha, right) > 0.95 > iou(lasso, right)


def test_a_subject_that_colour_cannot_tell_from_its_background_keeps_the_selection_and_says_so():
    """Grey subject on grey: the colour model keeps only a red spot (1 % of the lasso); the drawing is
    kept (today's answer) with a warning rather than shrunk to the spot."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:240, :320]
    image = np.clip(0.3 + rng.normal(0, 0.03, (240, 320, 3)), 0, 1).astype(np.float32)
    image[(yy - 120) ** 2 + (xx - 160) ** 2 <= 36] = [0.9, 0.2, 0.2]
    lasso = ((yy - 120) ** 2 + (xx - 160) ** 2 <= 60 ** 2).astype(np.float32)
    found = rough.find_subject(image, lasso, band_px=8)
    assert found.kind == "tight" and np.array_equal(found.mask, lasso)
    assert any("could not be told from its background" in n for n in found.notes)
    out = _job("refine", {"band_px": 8}, image, lasso)
    assert any("could not be told" in w for w in out.meta["warnings"])


def test_a_selection_of_the_whole_frame_is_select_subject_with_a_warning(monkeypatch, mk_env):
    """Refine of an all-selected frame: the rectangle is the frame, so the subject model's answer
    (here a stand-in that finds red) says where the object is; the result says what was done."""
    image, mask = scene()
    finder = _RedFinder()
    choose = Engine.choose_method
    monkeypatch.setattr(Engine, "choose_method", lambda self, task, name: "red" if task == "trimap_free" else choose(self, task, name))
    monkeypatch.setattr(Engine, "runtime", lambda self, name, device: finder)
    u8 = np.ascontiguousarray(np.round(image * 255).astype(np.uint8))
    si, a = P.buffer_from_array("image", u8)
    sg, g = P.buffer_from_array("guidance", np.full(mask.shape, 255, np.uint8), order="Y")
    p = P.check_job("refine", {"model": "classical"}, [si, sg])
    out = Engine().run("refine", p, {"image": a, "guidance": g}, [si, sg], lambda *a, **k: None)
    alpha = out.buffers["alpha"][1].reshape(mask.shape) / 255
    assert finder.shown and out.meta["selection"]["read_as"] == "box"
    assert iou(alpha, mask) > 0.95
    assert any("covers the whole image" in w for w in out.meta["warnings"])
