"""A real photo with a known mask for the editors' rough-selection tests (#31): Oxford-IIIT Pet test
photo Abyssinian_20 (CC BY-SA 4.0) from the data kit (../shared/data), with the evaluation
harness's loose lasso and rectangle drawn around its trimap's subject. Skips without the kit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

PHOTO_INDEX = 1  # pets test split, in its own order: Abyssinian_20, 400x383
MIN_IOU = 0.9  # the bar for a loose lasso and a rectangle in a real editor
LASSO_OFF = 0.06  # the looser end of the harness's loose lasso (2-8 %), without its random wobble


@dataclass
class KitPhoto:
    rgb8: np.ndarray  # (H, W, 3) uint8 sRGB
    mask: np.ndarray  # bool (H, W): the subject (trimap's foreground and half its band)
    known: np.ndarray  # bool (H, W): pixels the trimap labels (its unknown band is not scored)
    lasso: np.ndarray  # uint8 (H, W) 0/255: a loose lasso, LASSO_OFF of the short side outside the subject
    box: tuple[int, int, int, int]  # x, y, width, height: a rectangle around the subject

    def iou(self, alpha: np.ndarray) -> float:
        """IoU of alpha >= half its range against the mask, over the known pixels."""
        top = 255 if alpha.dtype == np.uint8 else (65535 if alpha.dtype == np.uint16 else 1.0)
        got = alpha.astype(np.float32) >= 0.5 * top
        return float((got & self.mask & self.known).sum() / max(1, ((got | self.mask) & self.known).sum()))


def kit_photo() -> KitPhoto:
    """The photo (the tests that use it are marked ``kit("pets")``; this skips too, as module fixtures
    are built before the marker's check)."""
    from mattekit_training import evaluate as E
    from mattekit_training.datasets import kit_missing, open_dataset

    if missing := kit_missing(["pets"]):
        pytest.skip(f"the data kit is not here: {missing[0]} (set MATTEKIT_SHARED_DATA)")
    sample = open_dataset("pets", "test")[PHOTO_INDEX]
    import cv2

    mask = E.reference_mask(sample) >= 0.5
    r = int(round(LASSO_OFF * min(mask.shape)))
    lasso = cv2.dilate(mask.astype(np.uint8) * 255, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    x, y, w, h = cv2.boundingRect((E.make_guidance("rectangle", sample) >= 0.5).astype(np.uint8))
    return KitPhoto(rgb8=np.clip(sample.image * 255 + 0.5, 0, 255).astype(np.uint8), mask=mask,
                    known=(sample.trimap < 0.25) | (sample.trimap > 0.75), lasso=lasso, box=(x, y, w, h))
