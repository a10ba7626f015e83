"""Defaults and limits: the one place each of these facts lives.

Everything else (daemon, client, engine, CLI, plug-ins via the protocol's `hello`)
reads them from here rather than repeating literals.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Largest image the daemon accepts, in pixels (width * height).
MAX_PIXELS = 200_000_000
#: Largest side the daemon accepts, in pixels (guards absurd aspect ratios).
MAX_SIDE = 65_535
#: ZeroMQ MAXMSGSIZE for one frame, bytes: a 200 MP RGBA float32 image plus headroom.
MAX_FRAME_BYTES = MAX_PIXELS * 16 + (1 << 20)
#: Longest accepted JSON header, bytes.
MAX_HEADER_BYTES = 64 * 1024
#: Deepest accepted JSON nesting in a header.
MAX_HEADER_DEPTH = 8

#: Jobs waiting behind the running one before the daemon answers `busy`.
MAX_QUEUED_JOBS = 32

def physical_memory_bytes() -> int | None:
    """This machine's RAM, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def max_job_bytes(ram: int | None) -> int:
    """Half the machine's RAM, at most 16 GiB: the rest is the editor's, the OS's and the models'."""
    cap = 16 * 2**30
    return cap if ram is None else min(cap, ram // 2)


#: Largest estimated working memory of one job, bytes (inputs + JOB_BYTES_PER_PIXEL per pixel);
#: a bigger request gets `too_large` before anything is decoded or allocated.
MAX_JOB_BYTES = max_job_bytes(physical_memory_bytes())
#: Working memory a job needs per image pixel, bytes: float32 image, alpha, trimap, foreground and
#: the solver's temporaries. Measured (`python -m bench`): 52 B/px for a whole 24 MP decontaminate
#: job; 64 leaves a margin for the refine solvers' tiles.
JOB_BYTES_PER_PIXEL = 64

#: The daemon sends a keep-alive `progress` for each queued or running job this often (seconds):
#: it notices clients that went away, and clients notice a daemon that died.
KEEPALIVE_S = 2.0

#: Refused handshakes (a wrong token on tcp) are answered at most once per this many seconds,
#: all peers together; beyond AUTH_MAX_PENDING waiting ones they are refused at once.
AUTH_FAILURE_INTERVAL_S = 0.1
AUTH_MAX_PENDING = 256

#: Client defaults (seconds).
CLIENT_TIMEOUT_S = 600.0
CLIENT_CONNECT_TIMEOUT_S = 5.0
CLIENT_RETRIES = 2
#: A job whose daemon sent nothing (not even a keep-alive) for this long is reported as unavailable.
#: The last resort: with pyzmq a daemon that died is noticed at once (its connection closes) and
#: one that hangs within CLIENT_HEARTBEAT_TIMEOUT_S (ZMTP heartbeats, answered by libzmq's own
#: I/O thread, so a busy daemon still answers them).
CLIENT_SILENCE_S = 30.0
CLIENT_HEARTBEAT_S = 1.0
CLIENT_HEARTBEAT_TIMEOUT_S = 3.0

#: Unknown band for refine: total width in pixels is max(MIN, short_side * FRACTION) unless given.
#: Wide enough that a quick lasso (off by ~1-2 % of the image) still has its true edge inside.
BAND_MIN_PX = 16
BAND_FRACTION = 0.02


def default_band_px(h: int, w: int) -> int:
    """The automatic band width for an (h, w) image: the one definition (editors vendor this module)."""
    return int(max(BAND_MIN_PX, round(min(h, w) * BAND_FRACTION)))


#: Refine solves its closed-form system on a working frame of at most REFINE_SOLVE_PX pixels with
#: at most REFINE_SOLVE_UNKNOWN unknowns; a photo or a band larger than that is solved at the scale
#: that fits and carried up to full resolution by the local linear model (refine.py). Bounds the
#: solve to ~1-2 s on 2 cores at any size (conjugate-gradient iterations grow with the band's width).
REFINE_SOLVE_PX = 500_000
REFINE_SOLVE_UNKNOWN = 50_000

#: Select Subject runs its subject model with the image's long side at most this (then refines at full size).
SUBJECT_WORKING_SIDE = 1024
#: Refine Selection's rough stage looks for the subject of each blob of a selection in the blob's bounding
#: box grown by this fraction of its long side on each side (the background's colour model needs
#: background around the selection); the editors send at least that much of the layer around a selection.
ROUGH_CONTEXT = 0.6
#: Select Subject inside a selection runs its subject model on the selection's bounding box grown by
#: this fraction of its long side (context around the subject; the crop gives the model more of the
#: subject's pixels than the whole frame does).
SELECT_CROP_MARGIN = 0.05
#: A subject model's output that spans less than this (of 0..1) found no clear subject (a warning).
SUBJECT_MIN_SPREAD = 0.2
#: A Select Subject result with less than this fraction selected (or more than 1 - it) is reported
#: as empty (or full-frame) in the result's warnings, never as plain success.
SUBJECT_EMPTY_FRACTION = 0.001
#: Coarse alpha (stretched to the model's own range) strictly between these is uncertain and is
#: recomputed at full resolution.
UNCERTAIN_LOW = 0.02
UNCERTAIN_HIGH = 0.98
#: Networks run at full resolution on tiles of this size (px), overlapping and cross-faded.
TILE_PX = 1024
TILE_OVERLAP_PX = 64
#: An image narrower than this (either side, px) is refined by the classical solve, not a network:
#: a network pads each side to a multiple of 32 plus 32, so a 65535 x 1 strip would cost 64x its
#: pixels (10.8 s vs 0.2 s measured for the PRN) and see no context across it.
NET_MIN_SIDE = 32
#: Pixels per strip of rows in the full-frame passes (decode, trimap, carry-up, decontaminate, encode):
#: bounds their temporaries, and each strip is a progress/cancel checkpoint (~0.05 s on 2 cores),
#: so a 100 MP job reports progress and answers a cancel within about a second.
STRIP_PX = 1 << 21
#: Threads for independent strips and tiles (the machine's cores, at most 8): numpy, cv2 and the
#: numba kernels release the GIL, so strips run in parallel.
THREADS = max(1, min(8, os.cpu_count() or 1))
#: Preview alpha sent before the full-resolution answer: long side in px.
PREVIEW_SIDE = 512

#: Inference: autocast (bf16, else fp16) and channels_last on CUDA; ONNX Runtime threads (None = its default).
RUNTIME_AMP = True
RUNTIME_CHANNELS_LAST = True
ORT_THREADS = None
#: ONNX Runtime's CPU memory arena. Off: it keeps a session's peak working memory for the session's
#: life, which is the daemon's: u2netp at 320 x 320 kept 499 MB resident with it and 55 MB without
#: (the daemon idle 787 MB -> ~340 MB), for 0.22 s per run instead of 0.17 s (2 cores, measured).
ORT_MEMORY_ARENA = False

#: Default decontamination amount (0 = keep original colours, 1 = fully estimated).
DECONTAMINATE_AMOUNT = 1.0
#: Iterations of the multi-level foreground solver on each level above 32 px. pymatting's
#: default (2) stops far from the energy's minimum: 10 measured 18 % lower colour error on
#: synthetic-val (F-MSE 0.00264 vs 0.00323, better on 85 % of images) for ~3x the solver time on
#: a 512 px image (docs/benchmarks.md, "Decontaminate").
FOREGROUND_ITERATIONS = 10
#: ... but at most this many soft-pixel iterations per job (never fewer than pymatting's 2). The
#: extra iterations pay on small frames only: on the 2 and 12 MP composites of `bench.highres`
#: (180 k and 500 k soft pixels) 10 iterations measured worse than 2 in both F-MSE (0.39 vs 0.25,
#: 0.56 vs 0.25 x1e-3) and alpha-weighted F-MSE, and 3-4x slower; synthetic-val (512 px, well under
#: this budget) keeps 10.
FOREGROUND_ITERATION_BUDGET = 1_000_000


def runtime_dir() -> Path:
    """Per-user directory for the ipc socket and its lock (mode 0700).

    Without ``XDG_RUNTIME_DIR`` it lives in the user's own state directory, never in a
    shared one such as /tmp, where another user could create it first and listen there.
    """
    base = os.environ.get("MATTEKIT_RUNTIME_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        return Path(xdg) / "mattekit"
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "mattekit" / "run"


def config_dir() -> Path:
    """Per-user configuration directory holding the auth token (file mode 0600)."""
    base = os.environ.get("MATTEKIT_CONFIG_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "mattekit"


def standard_endpoint() -> str:
    """The user's own daemon: an ipc socket in the runtime directory (the one that also serves sandboxes)."""
    return f"ipc://{runtime_dir() / 'daemon.sock'}"


def default_endpoint() -> str:
    """The daemon's default endpoint: $MATTEKIT_ENDPOINT, else the standard one."""
    return os.environ.get("MATTEKIT_ENDPOINT") or standard_endpoint()


def ipc_socket_path(endpoint: str) -> Path | None:
    """The socket file of an ``ipc://`` endpoint; None for tcp and Linux abstract (``ipc://@name``) sockets."""
    if endpoint.startswith("ipc://") and not endpoint[6:].startswith("@"):
        return Path(endpoint[6:])
    return None


def token_path() -> Path:
    return config_dir() / "token"


def weights_dir() -> Path:
    """Where shipped weights live (inside the package; MATTEKIT_SHIPPED_WEIGHTS_DIR overrides it) ..."""
    override = os.environ.get("MATTEKIT_SHIPPED_WEIGHTS_DIR")
    return Path(override) if override else Path(__file__).parent / "weights"


def user_weights_dir() -> Path:
    """... and where user-imported / user-trained weights go."""
    base = os.environ.get("MATTEKIT_DATA_DIR")
    if base:
        return Path(base) / "weights"
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "mattekit" / "weights"


def cache_dir() -> Path:
    """Download and build caches (the selfie wheel, rendered training data, editor roots)."""
    base = os.environ.get("MATTEKIT_CACHE_DIR")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mattekit"
