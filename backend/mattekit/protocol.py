"""mattekit wire protocol, version 1 — the single definition of the format.

A message is a ZeroMQ multipart message. Frame 0 is a UTF-8 JSON object (the
header); frames 1..n are raw pixel buffers, described in order by
``header["buffers"]``. Clients are DEALER sockets, the daemon is a ROUTER, so one
connection can stream progress and send ``cancel`` while a job runs.

Requests carry ``protocol``, ``op``, ``id`` and ``token``. A job op
(``select_subject``, ``refine``, ``decontaminate``) is answered by zero or more
``progress`` messages and then exactly one ``result`` or ``error``; every other op
is answered by exactly one ``result`` or ``error``. See docs/protocol.md.

This module's core uses only the standard library so that editor plug-ins,
whose bundled Python may lack NumPy, can vendor it as it is. The NumPy helpers
(``array_from_buffer``, ``buffer_from_array``) import NumPy lazily.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Sequence

PROTOCOL_VERSION = 1

#: tcp:// without CURVE authenticates at the ZMTP handshake with the PLAIN mechanism: this
#: user name and the token as password, so no peer without the token gets a byte queued.
PLAIN_USERNAME = "mattekit"

#: Requests that start a job on the worker.
JOB_OPS = ("select_subject", "refine", "decontaminate")
#: Requests answered at once by the daemon's I/O loop, even while a job runs.
CONTROL_OPS = ("hello", "ping", "cancel", "shutdown")
REQUEST_OPS = JOB_OPS + CONTROL_OPS
#: Messages the daemon sends.
REPLY_OPS = ("progress", "result", "error")
#: Widest unknown band a job may ask for (params["band_px"]), pixels.
BAND_MAX_PX = 1024

#: Buffers each job op takes, in frame order (the header names them too).
JOB_INPUTS: dict[str, tuple[str, ...]] = {
    "select_subject": ("image",),
    "refine": ("image",),  # and a guidance buffer or a "box" parameter (check_job)
    "decontaminate": ("image", "alpha"),
}
#: Inputs a job op may also take.
JOB_OPTIONAL_INPUTS: dict[str, tuple[str, ...]] = {
    "select_subject": ("guidance",),
    "refine": ("guidance",),
    "decontaminate": (),
}
#: Outputs a job can return, named in ``params["outputs"]``.
OUTPUTS = ("alpha", "foreground")

DTYPES = {"u8": 1, "u16": 2, "f16": 2, "f32": 4}
#: Channel orders and their channel counts. Y is a single grey/mask channel.
ORDERS = {"RGBA": 4, "BGRA": 4, "RGB": 3, "BGR": 3, "Y": 1, "YA": 2}
TRANSFERS = ("srgb", "linear")

#: Job parameters with their defaults. Unknown keys are refused (typos must not be ignored).
JOB_PARAMS: dict[str, Any] = {
    "outputs": ["alpha"],  # subset of OUTPUTS
    "model": "auto",  # "auto" | "portrait" | "general" | "classical" | a registered weights name
    "band_px": None,  # unknown band width in pixels; None = scale with the image
    "amount": None,  # decontaminate amount 0..1; None = config default
    "alpha_dtype": None,  # None = the image's dtype
    "guidance_kind": "auto",  # "auto" | "mask" | "trimap"
    "box": None,  # [x, y, width, height] in image px: a rectangle selection, "the object in here" (refine, select_subject)
    "device": "auto",  # "auto" | "cpu" | "cuda"
    "preview": False,  # send a low-resolution alpha in a progress message first
    # Select and Mask's edge controls, applied by the daemon to the alpha (mattekit.edges); 0 = off.
    # Sizes: a number or "N%" is a percentage of the short side of the image sent, "Npx" pixels.
    "smooth": 0,  # size: blur sigma, then the transition restretched to its own width (jags rounded off)
    "feather": 0,  # size: Gaussian sigma
    "contrast": 0,  # 0..100 %: the soft transition narrowed by this fraction
    "shift_edge": 0,  # size, signed: the edge moved out (+) or in (-)
}
GUIDANCE_KINDS = ("auto", "mask", "trimap")
#: The edge controls that take a size, and the largest size each may ask for (signed: shift_edge).
EDGE_SIZES = ("smooth", "feather", "shift_edge")
EDGE_MAX_PERCENT = 5.0  # of the short side
EDGE_MAX_PX = 500.0  # a disk filter's cost grows with its radius: 500 px at 100 MP is about a minute
DEVICES = ("auto", "cpu", "cuda")

# Error codes. Every error names one; docs/protocol.md lists them with their meaning.
E_BAD_MESSAGE = "bad_message"  # frames missing, header not an object, wrong frame count
E_BAD_JSON = "bad_json"  # header is not UTF-8 JSON, too long or too deeply nested
E_VERSION = "version_mismatch"
E_UNKNOWN_OP = "unknown_op"
E_BAD_PARAMS = "bad_params"  # a field or parameter missing, of the wrong type or out of range
E_BAD_BUFFER = "bad_buffer"  # a buffer whose length or layout does not match its descriptor
E_UNSUPPORTED = "unsupported_format"  # dtype, channel order or transfer not supported
E_TOO_LARGE = "too_large"  # dimensions over the configured limit
E_BAD_VALUES = "bad_values"  # NaN or Inf in float input
E_UNAUTHORIZED = "unauthorized"  # token missing or wrong
E_NO_MODEL = "no_model"  # the op needs a model that is not installed
E_BUSY = "busy"  # the job queue is full
E_CANCELLED = "cancelled"
E_NOT_FOUND = "not_found"  # cancel for an id the daemon does not know
E_DUPLICATE_ID = "duplicate_id"  # a job id already queued or running
E_OUT_OF_MEMORY = "out_of_memory"
E_INTERNAL = "internal"  # a bug: the message says what failed
E_UNAVAILABLE = "daemon_unavailable"  # client-side: no daemon answered in time
E_UNSAFE_ENDPOINT = "unsafe_endpoint"  # client-side: the socket or its directory is not this user's: nothing sent
E_SHUTTING_DOWN = "shutting_down"  # the daemon stopped (SIGTERM, `mattekit stop`) before the job finished

ERROR_CODES = (
    E_BAD_MESSAGE, E_BAD_JSON, E_VERSION, E_UNKNOWN_OP, E_BAD_PARAMS, E_BAD_BUFFER,
    E_UNSUPPORTED, E_TOO_LARGE, E_BAD_VALUES, E_UNAUTHORIZED, E_NO_MODEL, E_BUSY,
    E_CANCELLED, E_NOT_FOUND, E_DUPLICATE_ID, E_OUT_OF_MEMORY, E_INTERNAL, E_UNAVAILABLE,
    E_UNSAFE_ENDPOINT, E_SHUTTING_DOWN,
)


class ProtocolError(Exception):
    """A message that breaks the protocol; ``code`` is one of ERROR_CODES."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class BufferSpec:
    """Describes one raw pixel buffer frame.

    ``stride`` is the byte distance between rows (>= width * channels * itemsize),
    so editors can send their tiles without repacking.
    """

    name: str
    width: int
    height: int
    dtype: str = "u8"
    order: str = "RGBA"
    transfer: str = "srgb"
    stride: int = 0  # 0 = packed rows

    @property
    def channels(self) -> int:
        return ORDERS[self.order]

    @property
    def itemsize(self) -> int:
        return DTYPES[self.dtype]

    @property
    def row_bytes(self) -> int:
        return self.width * self.channels * self.itemsize

    @property
    def row_stride(self) -> int:
        return self.stride or self.row_bytes

    @property
    def nbytes(self) -> int:
        """Exact frame length: the last row need not carry stride padding."""
        if self.height == 0:
            return 0
        return self.row_stride * (self.height - 1) + self.row_bytes

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = self.channels
        d["stride"] = self.row_stride
        return d


def new_id() -> str:
    return uuid.uuid4().hex


# --------------------------------------------------------------------------- headers


def make_header(op: str, *, id: str | None = None, token: str | None = None, **fields: Any) -> dict[str, Any]:
    """A header dict with the fields every message carries."""
    h: dict[str, Any] = {"protocol": PROTOCOL_VERSION, "op": op, "id": id or new_id()}
    if token is not None:
        h["token"] = token
    h.update(fields)
    return h


def encode_header(header: dict[str, Any]) -> bytes:
    # allow_nan=False: NaN is not JSON, and a peer's parser might reject it.
    return json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def decode_header(frame: bytes | bytearray | memoryview, *, max_bytes: int = 64 * 1024, max_depth: int = 8) -> dict[str, Any]:
    """Parse and sanity-check frame 0. Raises ProtocolError with a specific code."""
    if len(frame) > max_bytes:
        raise ProtocolError(E_BAD_JSON, f"header is {len(frame)} bytes; the limit is {max_bytes}")
    try:
        text = bytes(frame).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(E_BAD_JSON, f"header is not UTF-8: {exc}") from None
    # Depth (nested objects and arrays; the header object is level 1) is checked on the raw
    # text, before parsing: json would recurse on "[[[[...".
    depth = level = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            level += 1
            depth = max(depth, level)
            if depth > max_depth:
                raise ProtocolError(E_BAD_JSON, f"header nested deeper than {max_depth} levels")
        elif ch in "]}":
            level -= 1
    try:
        header = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(E_BAD_JSON, f"header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(E_BAD_MESSAGE, "header must be a JSON object")
    return header


def _require(header: dict[str, Any], key: str, typ: type | tuple[type, ...], what: str) -> Any:
    if key not in header:
        raise ProtocolError(E_BAD_PARAMS, f"header lacks '{key}' ({what})")
    val = header[key]
    if isinstance(val, bool) and bool not in (typ if isinstance(typ, tuple) else (typ,)):
        raise ProtocolError(E_BAD_PARAMS, f"'{key}' must be {what}, not a boolean")
    if not isinstance(val, typ):
        raise ProtocolError(E_BAD_PARAMS, f"'{key}' must be {what}, got {type(val).__name__}")
    return val


def check_envelope(header: dict[str, Any]) -> None:
    """Version, op and id: what every request must have before anything else is read."""
    if "protocol" not in header:
        raise ProtocolError(E_VERSION, f"header lacks 'protocol'; this daemon speaks {PROTOCOL_VERSION}")
    if type(header["protocol"]) is not int or header["protocol"] != PROTOCOL_VERSION:  # 1.0 and true are not 1
        raise ProtocolError(
            E_VERSION, f"protocol {header['protocol']!r} is not supported; this daemon speaks {PROTOCOL_VERSION}"
        )
    op = _require(header, "op", str, "a string")
    if op not in REQUEST_OPS:
        raise ProtocolError(E_UNKNOWN_OP, f"unknown op {op!r}; known: {', '.join(REQUEST_OPS)}")
    rid = _require(header, "id", str, "a string")
    if not 1 <= len(rid) <= 128:
        raise ProtocolError(E_BAD_PARAMS, "'id' must be 1..128 characters")


def parse_buffer_spec(d: Any, *, max_pixels: int, max_side: int) -> BufferSpec:
    """Validate one entry of ``header["buffers"]``."""
    if not isinstance(d, dict):
        raise ProtocolError(E_BAD_PARAMS, "each buffer descriptor must be an object")
    name = _require(d, "name", str, "a string")
    w = _require(d, "width", int, "an integer")
    h = _require(d, "height", int, "an integer")
    if w <= 0 or h <= 0:
        raise ProtocolError(E_BAD_PARAMS, f"buffer '{name}' has size {w}x{h}; sides must be positive")
    if w > max_side or h > max_side or w * h > max_pixels:
        # Integer MP (not w*h/1e6): a JSON integer past 1e308 must not overflow a float here.
        raise ProtocolError(
            E_TOO_LARGE, f"buffer '{name}' is {w}x{h} = {w * h // 10**6} MP; the limit is {max_pixels // 10**6} MP and {max_side} px a side"
        )
    dtype = d.get("dtype", "u8")
    order = d.get("order", "RGBA")
    transfer = d.get("transfer", "srgb")
    for key, val in (("dtype", dtype), ("order", order), ("transfer", transfer)):
        if not isinstance(val, str):
            raise ProtocolError(E_BAD_PARAMS, f"buffer '{name}': '{key}' must be a string")
    if dtype not in DTYPES:
        raise ProtocolError(E_UNSUPPORTED, f"buffer '{name}': dtype {dtype!r} is not supported; use one of {list(DTYPES)}")
    if order not in ORDERS:
        raise ProtocolError(E_UNSUPPORTED, f"buffer '{name}': channel order {order!r} is not supported; use one of {list(ORDERS)}")
    if transfer not in TRANSFERS:
        raise ProtocolError(E_UNSUPPORTED, f"buffer '{name}': transfer {transfer!r} is not supported; use one of {list(TRANSFERS)}")
    if "channels" in d and (type(d["channels"]) is not int or d["channels"] != ORDERS[order]):
        raise ProtocolError(E_BAD_PARAMS, f"buffer '{name}': {d['channels']!r} channels do not match order {order}")
    stride = d.get("stride", 0)
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 0:
        raise ProtocolError(E_BAD_PARAMS, f"buffer '{name}': stride must be a non-negative integer")
    spec = BufferSpec(name, w, h, dtype, order, transfer, stride)
    if stride and stride < spec.row_bytes:
        raise ProtocolError(E_BAD_PARAMS, f"buffer '{name}': stride {stride} is shorter than a row ({spec.row_bytes} bytes)")
    if stride and stride % spec.itemsize:
        raise ProtocolError(E_BAD_PARAMS, f"buffer '{name}': stride {stride} is not a multiple of the sample size")
    return spec


def parse_buffers(header: dict[str, Any], frames: Sequence[Any], *, max_pixels: int, max_side: int) -> list[BufferSpec]:
    """Check the descriptors against the frames that came with them (count and byte length)."""
    descs = header.get("buffers", [])
    if not isinstance(descs, list):
        raise ProtocolError(E_BAD_PARAMS, "'buffers' must be a list")
    if len(descs) != len(frames):
        raise ProtocolError(E_BAD_MESSAGE, f"header describes {len(descs)} buffers but {len(frames)} frames followed it")
    specs = [parse_buffer_spec(d, max_pixels=max_pixels, max_side=max_side) for d in descs]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ProtocolError(E_BAD_PARAMS, f"buffer names repeat: {names}")
    for spec, frame in zip(specs, frames):
        n = len(frame)
        if n != spec.nbytes:
            raise ProtocolError(
                E_BAD_BUFFER,
                f"buffer '{spec.name}' is {n} bytes but {spec.width}x{spec.height} {spec.order} {spec.dtype} "
                f"with row stride {spec.row_stride} needs {spec.nbytes}",
            )
    return specs


def check_job(op: str, params: Any, specs: Sequence[BufferSpec]) -> dict[str, Any]:
    """Validate a job's parameters and inputs; return params with defaults filled in."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ProtocolError(E_BAD_PARAMS, "'params' must be an object")
    unknown = set(params) - set(JOB_PARAMS)
    if unknown:
        raise ProtocolError(E_BAD_PARAMS, f"unknown parameters {sorted(unknown)}; known: {sorted(JOB_PARAMS)}")
    p = {**JOB_PARAMS, **params}
    outputs = p["outputs"]
    if not isinstance(outputs, list) or not outputs or any(o not in OUTPUTS for o in outputs):
        raise ProtocolError(E_BAD_PARAMS, f"'outputs' must be a non-empty list drawn from {list(OUTPUTS)}")
    if not isinstance(p["model"], str) or not p["model"]:
        raise ProtocolError(E_BAD_PARAMS, "'model' must be a non-empty string")
    band = p["band_px"]
    if band is not None and (not isinstance(band, int) or isinstance(band, bool) or not 1 <= band <= BAND_MAX_PX):
        raise ProtocolError(E_BAD_PARAMS, f"'band_px' must be null (auto) or an integer 1..{BAND_MAX_PX}")
    amt = p["amount"]
    if amt is not None:
        # Compared as given (no float()): a JSON integer past 1e308 is out of range, not an overflow.
        if type(amt) not in (int, float) or not 0 <= amt <= 1:
            raise ProtocolError(E_BAD_PARAMS, "'amount' must be null or a number in [0, 1]")
    if p["alpha_dtype"] is not None and (not isinstance(p["alpha_dtype"], str) or p["alpha_dtype"] not in DTYPES):
        raise ProtocolError(E_UNSUPPORTED, f"'alpha_dtype' must be null or one of {list(DTYPES)}")
    if not isinstance(p["guidance_kind"], str) or p["guidance_kind"] not in GUIDANCE_KINDS:
        raise ProtocolError(E_BAD_PARAMS, f"'guidance_kind' must be one of {list(GUIDANCE_KINDS)}")
    if not isinstance(p["device"], str) or p["device"] not in DEVICES:
        raise ProtocolError(E_BAD_PARAMS, f"'device' must be one of {list(DEVICES)}")
    if not isinstance(p["preview"], bool):
        raise ProtocolError(E_BAD_PARAMS, "'preview' must be a boolean")
    for name in EDGE_SIZES:
        parse_edge_size(name, p[name])
    parse_contrast(p["contrast"])

    by_name = {s.name: s for s in specs}
    need, optional = JOB_INPUTS[op], JOB_OPTIONAL_INPUTS[op]
    missing = [n for n in need if n not in by_name]
    extra = [n for n in by_name if n not in need + optional]
    if missing or extra:
        raise ProtocolError(E_BAD_MESSAGE, f"{op} takes buffers {list(need)} (optional {list(optional)}); missing {missing}, unexpected {extra}")
    image = by_name["image"]
    if p["box"] is not None:
        box = p["box"]
        if op == "decontaminate":
            raise ProtocolError(E_BAD_PARAMS, "'box' is for refine and select_subject, not decontaminate")
        if not isinstance(box, list) or len(box) != 4 or any(type(v) is not int for v in box):
            raise ProtocolError(E_BAD_PARAMS, "'box' must be null or four integers [x, y, width, height]")
        if "guidance" in by_name:
            raise ProtocolError(E_BAD_PARAMS, "give a 'guidance' buffer or a 'box', not both")
        x, y, bw, bh = box
        if bw <= 0 or bh <= 0:
            raise ProtocolError(E_BAD_PARAMS, f"'box' {box} has no area: width and height must be positive")
        if x < 0 or y < 0 or x + bw > image.width or y + bh > image.height:
            raise ProtocolError(E_BAD_PARAMS, f"'box' {box} is outside the {image.width}x{image.height} image")
    elif op == "refine" and "guidance" not in by_name:
        raise ProtocolError(E_BAD_MESSAGE, "refine takes a 'guidance' buffer or a 'box' parameter: neither was given")
    if image.order not in ("RGBA", "BGRA", "RGB", "BGR"):
        raise ProtocolError(E_UNSUPPORTED, f"'image' must be RGBA, BGRA, RGB or BGR, not {image.order}")
    for n in need + optional:
        s = by_name.get(n)
        if s is None or n == "image":
            continue
        if s.order != "Y":
            raise ProtocolError(E_UNSUPPORTED, f"'{n}' must be a single-channel Y buffer, not {s.order}")
        if (s.width, s.height) != (image.width, image.height):
            raise ProtocolError(E_BAD_PARAMS, f"'{n}' is {s.width}x{s.height} but 'image' is {image.width}x{image.height}")
    return p


def parse_edge_size(name: str, value: Any) -> tuple[float, str]:
    """An edge control's size (``params[name]``) -> (amount, "%" | "px"); ProtocolError naming it.

    A number or a string "N%" is a percentage of the short side of the image the job sends, a
    string "Npx" pixels. Only ``shift_edge`` may be negative; |amount| <= EDGE_MAX_PERCENT % or
    EDGE_MAX_PX px.
    """
    what = (f"'{name}' must be a number (percent of the image's short side), \"N%\" or \"Npx\", "
            f"{'-' if name == 'shift_edge' else '0'}..{EDGE_MAX_PERCENT:g} % or "
            f"{'-' if name == 'shift_edge' else '0'}..{EDGE_MAX_PX:g} px")
    unit = "%"
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        unit = "px" if text.endswith("px") else "%" if text.endswith("%") else ""
        try:
            if not unit:
                raise ValueError(text)
            amount: Any = float(text[: -len(unit)])
        except ValueError:
            raise ProtocolError(E_BAD_PARAMS, f"{what}; got {value!r}") from None
    elif type(value) in (int, float):
        amount = value
    else:
        raise ProtocolError(E_BAD_PARAMS, f"{what}; got {type(value).__name__}")
    limit = EDGE_MAX_PX if unit == "px" else EDGE_MAX_PERCENT
    lowest = -limit if name == "shift_edge" else 0
    # Compared as given: a JSON integer past 1e308 is out of range, not an overflow; NaN fails both.
    if not lowest <= amount <= limit:
        raise ProtocolError(E_BAD_PARAMS, f"{what}; got {value!r}")
    return float(amount), unit


def parse_contrast(value: Any) -> float:
    """The edge control ``contrast``: a number 0..100 (percent) -> float; ProtocolError naming it."""
    if type(value) not in (int, float) or not 0 <= value <= 100:
        raise ProtocolError(E_BAD_PARAMS, f"'contrast' must be a number 0..100 (percent); got {value!r}")
    return float(value)


def edge_size_px(name: str, value: Any, width: int, height: int) -> float:
    """Edge control ``name``'s size ``value`` in pixels of a ``width`` x ``height`` image (see parse_edge_size)."""
    amount, unit = parse_edge_size(name, value)
    return amount if unit == "px" else amount / 100.0 * min(width, height)


def error_header(rid: str | None, code: str, message: str) -> dict[str, Any]:
    return make_header("error", id=rid or "", code=code, message=message)


def progress_header(rid: str, stage: str, fraction: float, **extra: Any) -> dict[str, Any]:
    return make_header("progress", id=rid, stage=stage, fraction=round(float(fraction), 4), **extra)


# --------------------------------------------------------------------------- NumPy helpers

_NP_DTYPES = {"u8": "<u1", "u16": "<u2", "f16": "<f2", "f32": "<f4"}


def array_from_buffer(spec: BufferSpec, frame: Any):
    """A zero-copy (H, W, C) NumPy view of a frame (read-only when the frame is)."""
    import numpy as np

    buf = frame.buffer if hasattr(frame, "buffer") else frame
    item = spec.itemsize
    # np.ndarray over the buffer: no copy, and the row stride may carry padding.
    return np.ndarray(
        shape=(spec.height, spec.width, spec.channels),
        dtype=_NP_DTYPES[spec.dtype],
        buffer=buf,
        strides=(spec.row_stride, spec.channels * item, item),
    )


def numpy_dtype(code: str) -> str:
    """The NumPy dtype string of a wire dtype code ("u8" is a byte here, not NumPy's uint64)."""
    return _NP_DTYPES[code]


def dtype_code(arr: Any) -> str:
    """The wire dtype code of a NumPy array."""
    kind = (arr.dtype.kind, arr.dtype.itemsize)
    codes = {("u", 1): "u8", ("u", 2): "u16", ("f", 2): "f16", ("f", 4): "f32"}
    if kind not in codes:
        raise ProtocolError(E_UNSUPPORTED, f"arrays of dtype {arr.dtype} cannot be sent; use uint8, uint16, float16 or float32")
    return codes[kind]


def buffer_from_array(name: str, arr: Any, *, order: str | None = None, transfer: str = "srgb") -> tuple[BufferSpec, Any]:
    """Describe a (H, W) or (H, W, C) array and return it as a C-contiguous frame (no copy if already so)."""
    import numpy as np

    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ProtocolError(E_BAD_PARAMS, f"'{name}' must be (H, W) or (H, W, C), got shape {arr.shape}")
    c = arr.shape[2]
    if order is None:
        order = {1: "Y", 2: "YA", 3: "RGB", 4: "RGBA"}.get(c)
        if order is None:
            raise ProtocolError(E_UNSUPPORTED, f"'{name}' has {c} channels")
    if ORDERS.get(order) != c:
        raise ProtocolError(E_BAD_PARAMS, f"'{name}' has {c} channels but order {order} needs {ORDERS.get(order)}")
    code = dtype_code(arr)
    arr = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"), copy=False))
    spec = BufferSpec(name, arr.shape[1], arr.shape[0], code, order, transfer)
    return spec, arr
