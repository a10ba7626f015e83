"""Hostile input against a real daemon socket (hypothesis).

Every case is sent as raw frames from a DEALER to a real daemon (classical engine,
1 MiB frame limit). Each must get one reply whose error code is in the set that case
allows, and the daemon must answer ``ping`` right after. The number of cases tried
is printed at the end (``pytest -s``); ``make fuzz`` runs a longer, randomised search.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mattekit import protocol as P

# The number of examples comes from the hypothesis profile (tests/conftest.py): fixed and
# derandomised in CI, random and longer under `make fuzz`.
FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck))
FRAME_LIMIT = 1 << 20
TOKEN = "T" * 43
COUNT = {"cases": 0}


@pytest.fixture(scope="module")
def fz():
    """(daemon, dealer): one daemon for the whole module, on a private ipc socket."""
    from mattekit.daemon import Daemon
    from mattekit.engine import Engine

    mp = pytest.MonkeyPatch()
    base = tempfile.mkdtemp(prefix="mkf-")
    mp.setenv("MATTEKIT_RUNTIME_DIR", f"{base}/rt")
    mp.setenv("MATTEKIT_CONFIG_DIR", f"{base}/cfg")
    d = Daemon(f"ipc://{base}/rt/d.sock", token=TOKEN, engine=Engine(learned=False), max_frame_bytes=FRAME_LIMIT, max_queued=4)
    ready = threading.Event()
    t = threading.Thread(target=d.serve, kwargs={"ready": ready.set, "install_signals": False}, daemon=True)
    t.start()
    assert ready.wait(20)
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(d.endpoint)
    yield d, s
    s.close()
    d.stop()
    t.join(20)
    mp.undo()
    shutil.rmtree(base, ignore_errors=True)
    print(f"\nfuzz: {COUNT['cases']} hostile cases sent to a real daemon socket")


def exchange(fz, frames, allowed: set[str]) -> dict:
    """Send one hostile message; its final reply must carry an allowed code; then ping must work."""
    d, s = fz
    COUNT["cases"] += 1
    s.send_multipart(frames)
    while True:
        assert s.poll(30_000), "no reply to a hostile message"
        reply = json.loads(s.recv_multipart()[0])
        if reply["op"] != "progress":
            break
    code = reply.get("code", "ok") if reply["op"] == "error" else "ok"
    assert code in allowed, (code, reply.get("message"), allowed)
    if reply["op"] == "error":
        assert isinstance(reply["message"], str) and reply["message"]
    ping = P.make_header("ping", token=d.token)
    s.send_multipart([P.encode_header(ping)])
    while True:
        assert s.poll(30_000), "daemon stopped answering ping"
        r = json.loads(s.recv_multipart()[0])
        if r["id"] == ping["id"]:
            assert r["op"] == "result" and r["pong"] is True
            break
    return reply


def job(token, *, w=6, h=5, dtype="u8", order="RGBA", params=None, img=None, guide=None):
    """A valid refine request as (header dict, [image bytes, guidance bytes])."""
    item = P.DTYPES[dtype]
    image = img if img is not None else b"\x80" * (w * h * P.ORDERS[order] * item)
    g = guide if guide is not None else b"\xff" * (w * h * item)
    descs = [
        dict(name="image", width=w, height=h, dtype=dtype, order=order, transfer="srgb"),
        dict(name="guidance", width=w, height=h, dtype=dtype, order="Y", transfer="srgb"),
    ]
    return P.make_header("refine", token=token, params=params or {"band_px": 2}, buffers=descs), [image, g]


def enc(header) -> bytes:
    return json.dumps(header, allow_nan=True, separators=(",", ":")).encode()


# ---------------------------------------------------------------- frames and sizes


@FUZZ
@given(cut=st.integers(1, 500), which=st.sampled_from([0, 1]), grow=st.booleans())
def test_truncated_or_padded_buffers(fz, cut, which, grow):
    header, bufs = job(fz[0].token, w=12, h=10)
    b = bufs[which]
    bufs[which] = b + b"\0" * cut if grow else b[: max(0, len(b) - cut)]
    exchange(fz, [enc(header), *bufs], {P.E_BAD_BUFFER})


@FUZZ
@given(n=st.integers(0, 6), op=st.sampled_from(P.REQUEST_OPS))
def test_wrong_frame_counts(fz, n, op):
    header, bufs = job(fz[0].token)
    header["op"] = op
    if op in P.JOB_OPS and n == 2:
        n = 3
    frames = [enc(header)] + [b"\0" * 30] * n
    allowed = {P.E_BAD_MESSAGE}  # control ops (hello included) take no buffers
    if op == "cancel" and n == 0:
        allowed = {P.E_BAD_PARAMS}  # no target
    if op == "hello" and n == 0:
        allowed = {"ok"}
    assume(not (op in ("ping", "shutdown") and n == 0))  # valid; shutdown would stop the daemon
    exchange(fz, frames, allowed)


def test_empty_and_header_only_messages(fz):
    exchange(fz, [b""], {P.E_BAD_JSON})
    exchange(fz, [b"{}"], {P.E_VERSION})


@FUZZ
@given(w=st.integers(-(2**40), 2**40), h=st.integers(-(2**40), 2**40), nbytes=st.integers(0, 64))
def test_declared_dimensions_against_tiny_buffers(fz, w, h, nbytes):
    header, _ = job(fz[0].token)
    for dsc in header["buffers"]:
        dsc["width"], dsc["height"] = w, h
    allowed = {P.E_BAD_PARAMS} if w <= 0 or h <= 0 else {P.E_TOO_LARGE, P.E_BAD_BUFFER}
    exchange(fz, [enc(header), b"\0" * nbytes, b"\0" * nbytes], allowed)


def test_an_oversized_frame_drops_only_that_connection(fz):
    d, s = fz
    bad = zmq.Context.instance().socket(zmq.DEALER)
    bad.setsockopt(zmq.LINGER, 0)
    bad.connect(d.endpoint)
    try:
        header, _ = job(d.token, w=1024, h=1024)
        COUNT["cases"] += 1
        bad.send_multipart([enc(header), b"\0" * (FRAME_LIMIT + 1), b"\0" * (1024 * 1024)])
        # ZeroMQ closes the connection when a frame passes MAXMSGSIZE: no reply ever comes.
        assert not bad.poll(1500)
        assert exchange(fz, [P.encode_header(P.make_header("hello"))], {"ok"})["server"] == "mattekit"
        # The DEALER reconnects by itself; the new connection is served normally.
        ping = P.make_header("ping", token=d.token)
        bad.send_multipart([P.encode_header(ping)])
        assert bad.poll(10_000) and json.loads(bad.recv_multipart()[0])["pong"] is True
    finally:
        bad.close()


# ---------------------------------------------------------------- headers


@FUZZ
@given(data=st.binary(min_size=1, max_size=200))
def test_arbitrary_header_bytes(fz, data):
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        allowed = {P.E_BAD_JSON}
    else:
        allowed = {P.E_VERSION} if isinstance(obj, dict) else {P.E_BAD_MESSAGE}
    exchange(fz, [data], allowed | {P.E_BAD_JSON})


@FUZZ
@given(prefix=st.binary(max_size=20), bad=st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
def test_non_utf8_headers(fz, prefix, bad):
    header = P.encode_header(P.make_header("ping", token=fz[0].token))
    exchange(fz, [prefix + bad + header], {P.E_BAD_JSON})


@FUZZ
@given(depth=st.integers(9, 20_000), kind=st.sampled_from(["list", "dict", "params", "mixed"]))
def test_deeply_nested_json(fz, depth, kind):
    if kind == "list":
        text = "[" * depth + "]" * depth
    elif kind == "dict":
        text = '{"a":' * depth + "1" + "}" * depth
    else:
        inner = ("[" * depth + "]" * depth) if kind == "params" else ('[{"a":' * (depth // 2) + "1" + "}]" * (depth // 2))
        text = enc(P.make_header("refine", token=fz[0].token))[:-1].decode() + ',"params":{"x":' + inner + "}}"
    allowed = {P.E_BAD_JSON}
    if len(text) > 64 * 1024:
        allowed = {P.E_BAD_JSON}  # too long, refused before parsing
    exchange(fz, [text.encode()], allowed)


# Which code a wrong value of each field may give (the most specific that applies).
ENVELOPE_FIELDS = {
    "protocol": {P.E_VERSION},
    "op": {P.E_UNKNOWN_OP, P.E_BAD_PARAMS},
    "id": {P.E_BAD_PARAMS},
    "token": {P.E_UNAUTHORIZED},
    "params": {P.E_BAD_PARAMS},
    "buffers": {P.E_BAD_PARAMS, P.E_BAD_MESSAGE},
}
BUFFER_FIELDS = {
    "name": {P.E_BAD_PARAMS, P.E_BAD_MESSAGE},
    "width": {P.E_BAD_PARAMS, P.E_TOO_LARGE, P.E_BAD_BUFFER},
    "height": {P.E_BAD_PARAMS, P.E_TOO_LARGE, P.E_BAD_BUFFER},
    "dtype": {P.E_UNSUPPORTED, P.E_BAD_PARAMS},
    "order": {P.E_UNSUPPORTED, P.E_BAD_PARAMS},
    "transfer": {P.E_UNSUPPORTED, P.E_BAD_PARAMS},
    "stride": {P.E_BAD_PARAMS, P.E_BAD_BUFFER},
    "channels": {P.E_BAD_PARAMS},
}
PARAM_FIELDS = {
    "outputs": {P.E_BAD_PARAMS},
    "model": {P.E_BAD_PARAMS, P.E_NO_MODEL},
    "band_px": {P.E_BAD_PARAMS},
    "amount": {P.E_BAD_PARAMS},
    "alpha_dtype": {P.E_UNSUPPORTED, P.E_BAD_PARAMS},
    "guidance_kind": {P.E_BAD_PARAMS},
    "device": {P.E_BAD_PARAMS},
    "preview": {P.E_BAD_PARAMS},
    "smooth": {P.E_BAD_PARAMS},
    "feather": {P.E_BAD_PARAMS},
    "shift_edge": {P.E_BAD_PARAMS},
    "contrast": {P.E_BAD_PARAMS},
}
def json_type(v) -> str:
    """The JSON type of a decoded value (bool is not an integer here, unlike in Python)."""
    for typ, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), (list, "list"), (dict, "dict")):
        if isinstance(v, typ):
            return name
    return "null"


def other_type(*names: str):
    """Any JSON value whose type is none of ``names``: wrong for a field of those types by construction."""
    return WIDE_JSON.filter(lambda v: json_type(v) not in names)


def other_text(*valid: str, **kw):
    return st.text(**kw).filter(lambda t: t not in valid)


def other_int(*valid: int):
    return HUGE_INTS.filter(lambda n: n not in valid)


def edge_size_wrong(signed: bool):
    """Values an edge control's size must refuse: another JSON type, a number past its percent range, a
    string without a unit or past its pixel range."""
    lim = P.EDGE_MAX_PERCENT
    lowest = -lim if signed else 0
    return (other_type("int", "float", "str")
            | HUGE_INTS.filter(lambda n: not lowest <= n <= lim)
            | st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not lowest <= x <= lim)
            | st.sampled_from(["3", "px", "%", "wide", f"{P.EDGE_MAX_PX + 1:g}px", f"{lim + 1:g}%", "nanpx", "1e999px"]
                              + ([] if signed else ["-1px", "-0.5%"])))


# JSON integers far past float range: they must be refused, not overflow (1e309 and up).
HUGE_INTS = st.integers(-(2**70), 2**70) | st.integers(10**308, 10**400) | st.integers(-(10**400), -(10**308))
WIDE_JSON = st.recursive(
    st.none() | st.booleans() | HUGE_INTS | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
    max_leaves=8,
)
# For each field: a strategy of values invalid for it (a wrong JSON type, or the right type out of range).
# The reference job has a 6x5 u8 RGBA image (rows of 24 bytes) and a Y guidance (rows of 6 bytes).
WRONG = {
    "envelope": {
        "protocol": other_type("int") | other_int(1),
        "op": other_type("str") | other_text(*P.REQUEST_OPS, max_size=40),
        "id": other_type("str") | st.just("") | st.text(min_size=129, max_size=200),
        "token": other_type("str") | other_text(TOKEN, max_size=50),
        "params": other_type("dict", "null"),
        "buffers": other_type("list"),
    },
    "buffer": {
        "name": other_type("str") | other_text("image", "guidance", max_size=20),
        "width": other_type("int") | other_int(6),
        "height": other_type("int") | other_int(5),
        "dtype": other_type("str") | other_text(*P.DTYPES, max_size=8),
        "order": other_type("str") | other_text(*P.ORDERS, max_size=8),
        "transfer": other_type("str") | other_text(*P.TRANSFERS, max_size=8),
        "stride": other_type("int") | other_int(0, 6, 24),
        "channels": other_type("int") | other_int(1, 4),
    },
    "param": {
        "outputs": other_type("list") | st.just([]) | st.lists(other_text(*P.OUTPUTS, max_size=12), min_size=1, max_size=3),
        "model": other_type("str") | st.just(""),
        "band_px": other_type("int", "null") | HUGE_INTS.filter(lambda n: not 1 <= n <= 1024),
        "amount": other_type("int", "float", "null")
        | HUGE_INTS.filter(lambda n: not 0 <= n <= 1)
        | st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not 0 <= x <= 1),
        "alpha_dtype": other_type("str", "null") | other_text(*P.DTYPES, max_size=8),
        "guidance_kind": other_type("str") | other_text(*P.GUIDANCE_KINDS, max_size=12),
        "device": other_type("str") | other_text(*P.DEVICES, max_size=8),
        "preview": other_type("bool"),
        "smooth": edge_size_wrong(signed=False),
        "feather": edge_size_wrong(signed=False),
        "shift_edge": edge_size_wrong(signed=True),
        "contrast": other_type("int", "float") | HUGE_INTS.filter(lambda n: not 0 <= n <= 100)
        | st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not 0 <= x <= 100),
    },
}
ALLOWED = {"envelope": ENVELOPE_FIELDS, "buffer": BUFFER_FIELDS, "param": PARAM_FIELDS}
CASES = [(where, field) for where in WRONG for field in WRONG[where]]


def test_every_checked_field_is_fuzzed():
    assert {w: set(f) for w, f in WRONG.items()} == {w: set(f) for w, f in ALLOWED.items()}


@FUZZ
@given(case=st.sampled_from(CASES), data=st.data())
def test_wrong_values_for_every_field(fz, case, data):
    where, field = case
    value = data.draw(WRONG[where][field], label=field)
    header, bufs = job(fz[0].token)
    if where == "envelope":
        header[field] = value
    elif where == "buffer":
        header["buffers"][data.draw(st.sampled_from([0, 1]), label="buffer")][field] = value
    else:
        header["params"][field] = value
    exchange(fz, [enc(header), *bufs], ALLOWED[where][field])


@FUZZ
@given(op=st.text(max_size=40).filter(lambda o: o not in P.REQUEST_OPS))
def test_unknown_ops(fz, op):
    exchange(fz, [P.encode_header(P.make_header(op, token=fz[0].token))], {P.E_UNKNOWN_OP})


# ---------------------------------------------------------------- NaN / Inf


@FUZZ
@given(field=st.sampled_from(["amount", "band_px", "protocol", "width"]), const=st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]))
def test_nan_and_inf_in_the_header(fz, field, const):
    header, bufs = job(fz[0].token, params={"band_px": 2, "amount": 0.5})
    text = enc(header).decode()
    target = {"amount": '"amount":0.5', "band_px": '"band_px":2', "protocol": '"protocol":1', "width": '"width":6'}[field]
    assert target in text
    text = text.replace(target, target.split(":")[0] + ":" + const, 1)
    if const.startswith(("NaN", "Inf", "-Inf")):
        allowed = {P.E_BAD_JSON}  # not JSON at all
    else:  # 1e999 parses to inf
        allowed = {"amount": {P.E_BAD_PARAMS}, "band_px": {P.E_BAD_PARAMS}, "protocol": {P.E_VERSION}, "width": {P.E_BAD_PARAMS}}[field]
    exchange(fz, [text.encode(), *bufs], allowed)


@FUZZ
@given(
    dtype=st.sampled_from(["f32", "f16"]),
    which=st.sampled_from(["image", "guidance"]),
    value=st.sampled_from([np.nan, np.inf, -np.inf]),
    pos=st.integers(0, 29),
)
def test_nan_and_inf_in_float_pixels(fz, dtype, which, value, pos):
    npd = np.float32 if dtype == "f32" else np.float16
    img = np.full((5, 6, 4), 0.5, npd)
    guide = np.zeros((5, 6), npd)
    guide[1:4, 1:5] = 1
    (img[..., 1] if which == "image" else guide).flat[pos] = value
    header, _ = job(fz[0].token, dtype=dtype, img=img.tobytes(), guide=guide.tobytes())
    exchange(fz, [enc(header), img.tobytes(), guide.tobytes()], {P.E_BAD_VALUES})


# ---------------------------------------------------------------- ids: replayed, cancelled


@FUZZ
@given(rid=st.text(min_size=1, max_size=128), action=st.sampled_from(["replay", "cancel_then_replay", "cancel_twice", "cancel_unknown"]))
def test_replayed_and_cancelled_ids(fz, rid, action):
    d, s = fz
    header, bufs = job(d.token)
    header["id"] = rid
    frames = [enc(header), *bufs]
    cancel = lambda: [P.encode_header(P.make_header("cancel", token=d.token, target=rid))]  # noqa: E731
    if action == "cancel_unknown":
        exchange(fz, cancel(), {P.E_NOT_FOUND})
    else:
        _replay_or_cancel(fz, rid, action, frames, cancel)


def _replay_or_cancel(fz, rid, action, frames, cancel):
    d, s = fz
    COUNT["cases"] += 1
    s.send_multipart(frames)
    if action == "replay":
        s.send_multipart(frames)
    else:
        s.send_multipart(cancel())
        if action == "cancel_twice":
            s.send_multipart(cancel())
    # Collect the job's final replies: the replay, if refused, is a duplicate; a cancel
    # either stopped the job or found it gone.
    job_codes, cancel_codes = [], []
    n_job = 2 if action == "replay" else 1
    n_cancel = {"replay": 0, "cancel_then_replay": 1, "cancel_twice": 2}[action]
    deadline = time.monotonic() + 60
    while (len(job_codes) < n_job or len(cancel_codes) < n_cancel) and time.monotonic() < deadline:
        assert s.poll(30_000)
        r = json.loads(s.recv_multipart()[0])
        if r["op"] == "progress":
            continue
        code = r.get("code", "ok") if r["op"] == "error" else "ok"
        if r["op"] == "result" and "cancelled" in r:
            cancel_codes.append("ok")
        elif r["op"] == "error" and r["code"] == P.E_NOT_FOUND:
            cancel_codes.append(code)
        else:
            job_codes.append(code)
    assert len(job_codes) == n_job and len(cancel_codes) == n_cancel
    if action == "replay":
        assert set(job_codes) <= {"ok", P.E_DUPLICATE_ID}
    else:
        assert set(job_codes) <= {"ok", P.E_CANCELLED}
    if action == "cancel_then_replay":
        exchange(fz, frames, {"ok"})  # a finished id can be used again
    assert not any(k[1] == rid for k in d.jobs)


def test_memory_stays_bounded_after_fuzzing(fz):
    d, _ = fz
    deadline = time.monotonic() + 30
    while (d.jobs or len(d.scheduler)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not d.jobs and len(d.scheduler) == 0 and d.running is None
    assert d.stats["errors:internal"] == 0, "a hostile input reached an internal error"
