"""Small synthetic composites with exact alpha and foreground, shared by the tests."""

import numpy as np


def soft_disc(h: int, w: int, radius: float, *, seed: int = 0, ramp: float = 5.0, centre: tuple[float, float] | None = None):
    """A soft disc of a smooth colour over noise → (image (h, w, 3), alpha (h, w), true foreground (h, w, 3)), float32.

    ramp: width in px of the alpha transition; centre: (y, x), default the image centre.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = centre if centre is not None else (h / 2, w / 2)
    r = np.hypot(yy - cy, xx - cx)
    alpha = np.clip((radius - r) / ramp + 0.5, 0, 1).astype(np.float32)
    fg = np.stack([0.8 + 0.1 * np.sin(xx / 9), 0.3 + 0.1 * np.cos(yy / 7), 0.2 + 0 * xx], -1).astype(np.float32)
    bg = (0.3 + 0.4 * rng.random((h, w, 3))).astype(np.float32)
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    return image.astype(np.float32), alpha, fg
