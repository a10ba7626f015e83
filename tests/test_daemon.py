"""A real daemon on real ZeroMQ sockets (ipc and tcp loopback): ops, errors, auth, lifecycle."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from mattekit import protocol as P
from mattekit.client import Client, DaemonUnavailable, MatteError
from mattekit.daemon import Daemon, SetupError
from netutil import free_port

ROOT = Path(__file__).resolve().parents[1]


def composite(h=64, w=80, seed=0):
    """A disc subject on a gradient background, its exact alpha and a rough guidance."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - h / 2, xx - w / 2)
    alpha = np.clip(h / 3 - r + 0.5, 0, 1).astype(np.float32)
    fg = np.array([0.9, 0.3, 0.1], np.float32)
    bg = np.stack([xx / w, yy / h, np.full_like(xx, 0.5, dtype=float)], -1).astype(np.float32)
    img = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    img = np.clip(img + rng.normal(0, 0.01, img.shape), 0, 1).astype(np.float32)
    guidance = (r < h / 3 + 3).astype(np.float32)  # a little too big, like a quick lasso
    return img, alpha, guidance


def to_u8(x):
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def raw(sock, frames, timeout_ms=10_000):
    """Send raw frames from a DEALER and return the reply (header dict, frames)."""
    sock.send_multipart(frames)
    while True:  # skip progress: some errors (NaN) are found by the worker after `queued`
        assert sock.poll(timeout_ms), "no reply"
        parts = sock.recv_multipart()
        header = json.loads(parts[0])
        if header["op"] != "progress":
            return header, parts[1:]


@pytest.fixture
def dealer(daemon):
    d, _ = daemon
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(d.endpoint)
    yield s
    s.close()


def hdr(d, op="ping", **kw):
    return P.encode_header(P.make_header(op, token=d.token, **kw))


# ---------------------------------------------------------------- ops


def test_hello_without_token_gives_version_only(daemon):
    d, c = daemon
    anon = c.hello(auth=False)
    assert anon["protocol_version"] == P.PROTOCOL_VERSION and "models" not in anon
    full = c.hello()
    assert set(P.REQUEST_OPS) <= set(full["ops"]) and full["max_pixels"] == d.max_pixels
    assert "classical" in full["models"]["guided"] and full["devices"][0] == "cpu"


def test_ping(daemon):
    _, c = daemon
    r = c.ping()
    assert r["pong"] is True and r["queued"] == 0


@pytest.mark.parametrize("order", ["RGBA", "BGRA", "RGB"])
def test_refine_u8_returns_a_better_alpha(daemon, order):
    _, c = daemon
    img, alpha, guidance = composite()
    arr = to_u8(img)
    if order.startswith("BGR"):
        arr = arr[..., ::-1]
    if order.endswith("A"):
        arr = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], 2)
    stages = []
    res = c.refine(arr, to_u8(guidance), order=order, band_px=12, outputs=["alpha", "foreground"], progress=lambda s, f, h: stages.append((s, f)))
    a = res.alpha.astype(np.float32) / 255
    assert res.alpha.dtype == np.uint8 and a.shape == alpha.shape
    assert np.abs(a - alpha).sum() < 0.5 * np.abs(guidance - alpha).sum()
    assert res.model == "classical"
    assert stages[0][0] == "queued" and [f for _, f in stages] == sorted(f for _, f in stages)
    fg = res.foreground
    assert fg.shape == alpha.shape + (4,) and res.header["buffers"][1]["order"] == ("BGRA" if order.startswith("BGR") else "RGBA")
    assert np.array_equal(fg[..., 3], res.alpha)


def test_refine_u16_and_f32_keep_their_precision(daemon):
    _, c = daemon
    img, alpha, guidance = composite()
    r16 = c.refine((img * 65535).astype(np.uint16), (guidance * 65535).astype(np.uint16), band_px=12)
    assert r16.alpha.dtype == np.uint16
    # A 16-bit alpha must use more than 256 levels inside the band.
    assert len(np.unique(r16.alpha)) > 256 or len(np.unique(r16.alpha[(r16.alpha > 0) & (r16.alpha < 65535)])) > 20
    r32 = c.refine(img, guidance, band_px=12, alpha_dtype="f32")
    assert r32.alpha.dtype == np.float32
    assert np.abs(r32.alpha - r16.alpha / 65535).max() < 2e-3


def test_decontaminate_amount_zero_keeps_16bit_colours_exactly(daemon):
    _, c = daemon
    img, alpha, _ = composite()
    rgba = np.concatenate([img, np.ones_like(alpha)[..., None]], 2)
    arr = (rgba * 65535).astype(np.uint16)
    res = c.decontaminate(arr, (alpha * 65535).astype(np.uint16), amount=0.0)
    fg = res.foreground
    assert fg.dtype == np.uint16
    inside = alpha > 0
    assert np.array_equal(fg[..., :3][inside], arr[..., :3][inside])
    assert np.array_equal(fg[..., 3], (alpha * 65535).astype(np.uint16))


def test_decontaminate_moves_edge_colours_towards_the_subject(daemon):
    _, c = daemon
    img, alpha, _ = composite()
    res = c.decontaminate(img, alpha, amount=1.0)
    fg = res.foreground[..., :3]
    edge = (alpha > 0.2) & (alpha < 0.8)
    target = np.array([0.9, 0.3, 0.1], np.float32)
    assert np.abs(fg[edge] - target).mean() < 0.5 * np.abs(img[edge] - target).mean()


def test_linear_transfer_round_trips(daemon):
    _, c = daemon
    img, alpha, _ = composite()
    from mattekit.imageops import srgb_to_linear

    lin = srgb_to_linear(img).astype(np.float32)
    res = c.decontaminate(lin, alpha, transfer="linear", amount=0.0)
    assert res.header["buffers"][0]["transfer"] == "linear"
    inside = alpha > 0
    assert np.abs(res.foreground[..., :3][inside] - lin[inside]).max() < 1e-5


def test_select_subject_without_model_says_how_to_get_one(daemon):
    _, c = daemon
    img, _, _ = composite()
    with pytest.raises(MatteError) as e:
        c.select_subject(to_u8(img))
    assert e.value.code == P.E_NO_MODEL and "mattekit" in e.value.message


# ---------------------------------------------------------------- cancel


def test_cancel_a_running_job(daemon):
    _, c = daemon
    img, _, guidance = composite(600, 600)
    seen = []

    def progress(stage, frac, h):
        seen.append(stage)
        return stage != "trimap"  # cancel before the solver's tiles: each tile checks for it

    with pytest.raises(MatteError) as e:
        c.refine(to_u8(img), to_u8(guidance), band_px=40, progress=progress)
    assert e.value.code == P.E_CANCELLED
    assert c.ping()["running"] is False


def test_cancel_unknown_job(daemon):
    _, c = daemon
    with pytest.raises(MatteError) as e:
        c.cancel("nope")
    assert e.value.code == P.E_NOT_FOUND


# ---------------------------------------------------------------- bad input


def _job_frames(d, op="refine", w=8, h=6, nbytes=None, **desc):
    # nbytes given: both frames get that many bytes (never allocate what a hostile header claims).
    image = dict(name="image", width=w, height=h, dtype="u8", order="RGBA", transfer="srgb")
    image.update(desc)
    guide = dict(name="guidance", width=w, height=h, dtype="u8", order="Y", transfer="srgb")
    header = P.make_header(op, token=d.token, params={}, buffers=[image, guide])
    return [P.encode_header(header), b"\0" * (w * h * 4 if nbytes is None else nbytes), b"\0" * (w * h if nbytes is None else nbytes)]


def _nan_frames(d):
    img = np.zeros((6, 8, 4), np.float32)
    img[2, 3, 1] = np.nan
    spec_i, a = P.buffer_from_array("image", img)
    spec_g, g = P.buffer_from_array("guidance", np.zeros((6, 8), np.float32), order="Y")
    header = P.make_header("refine", token=d.token, buffers=[spec_i.to_json(), spec_g.to_json()])
    return [P.encode_header(header), a.tobytes(), g.tobytes()]


BAD = {
    "version": (lambda d: [json.dumps({"protocol": 99, "op": "ping", "id": "1", "token": d.token}).encode()], P.E_VERSION),
    "unknown_op": (lambda d: [hdr(d, "explode")], P.E_UNKNOWN_OP),
    "bad_json": (lambda d: [b"{oops"], P.E_BAD_JSON),
    "not_utf8": (lambda d: [b"\xc3\x28"], P.E_BAD_JSON),
    "empty": (lambda d: [b""], P.E_BAD_JSON),
    "length": (lambda d: _job_frames(d, nbytes=100), P.E_BAD_BUFFER),
    "huge_dims_tiny_buffer": (lambda d: _job_frames(d, w=60000, h=60000, nbytes=16), P.E_TOO_LARGE),
    "over_limit": (lambda d: _job_frames(d, w=16000, h=13000, nbytes=16), P.E_TOO_LARGE),
    "zero_size": (lambda d: _job_frames(d, w=0, nbytes=0), P.E_BAD_PARAMS),
    "nan": (_nan_frames, P.E_BAD_VALUES),
    "dtype": (lambda d: _job_frames(d, dtype="f64"), P.E_UNSUPPORTED),
    "frames_missing": (lambda d: _job_frames(d)[:2], P.E_BAD_MESSAGE),
    "ping_with_buffers": (lambda d: [hdr(d, "ping"), b"xx"], P.E_BAD_MESSAGE),
    "no_token": (lambda d: [P.encode_header(P.make_header("ping"))], P.E_UNAUTHORIZED),
    "wrong_token": (lambda d: [P.encode_header(P.make_header("ping", token=d.token[:-1] + "x"))], P.E_UNAUTHORIZED),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gets_its_error_and_daemon_keeps_serving(daemon, dealer, case):
    d, c = daemon
    make, code = BAD[case]
    reply, _ = raw(dealer, make(d))
    assert reply["op"] == "error" and reply["code"] == code, reply
    assert reply["message"]
    assert c.ping()["pong"] is True


def test_duplicate_job_id_is_refused(daemon, dealer):
    d, c = daemon
    img, _, g = composite(400, 400)
    spec_i, a = P.buffer_from_array("image", to_u8(img))
    spec_g, gg = P.buffer_from_array("guidance", to_u8(g), order="Y")
    header = P.encode_header(P.make_header("refine", id="same", token=d.token, params={"band_px": 30}, buffers=[spec_i.to_json(), spec_g.to_json()]))
    dealer.send_multipart([header, a, gg])
    dealer.send_multipart([header, a, gg])
    codes = []
    deadline = time.time() + 60
    while time.time() < deadline and len([x for x in codes if x in ("result", P.E_DUPLICATE_ID)]) < 2:
        if dealer.poll(1000):
            r = json.loads(dealer.recv_multipart()[0])
            codes.append(r["code"] if r["op"] == "error" else r["op"])
    assert P.E_DUPLICATE_ID in codes and "result" in codes


# ---------------------------------------------------------------- endpoints and lifecycle




def test_tcp_loopback(start_daemon):
    from mattekit.engine import Engine

    d = start_daemon(f"tcp://127.0.0.1:{free_port()}", engine=Engine(learned=False))
    with Client(d.endpoint, token=d.token, retries=0) as c:
        img, alpha, g = composite()
        r = c.refine(to_u8(img), to_u8(g), band_px=12)
        assert r.alpha.shape == alpha.shape


def test_remote_bind_needs_allow_remote(mk_env):
    with pytest.raises(SetupError, match="allow-remote"):
        Daemon("tcp://0.0.0.0:5599")


def test_token_file_is_private_and_loose_permissions_are_refused(mk_env):
    from mattekit import config
    from mattekit.daemon import load_token

    tok = load_token()
    path = config.token_path()
    assert len(tok) >= 32 and (path.stat().st_mode & 0o777) == 0o600
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    os.chmod(path, 0o644)
    with pytest.raises(SetupError, match="chmod 600"):
        load_token()


def test_no_daemon_gives_a_clear_error_in_time(mk_env):
    t0 = time.monotonic()
    with Client(f"ipc://{mk_env}/nobody.sock", token="x", connect_timeout=0.5, retries=1) as c:
        with pytest.raises(DaemonUnavailable, match="mattekit serve"):
            c.ping()
    assert time.monotonic() - t0 < 10


def _serve(mk_env, endpoint):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "backend"), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "mattekit", "--endpoint", endpoint, "serve"], env=env, stderr=subprocess.PIPE, text=True)


def _wait_ready(endpoint, token_dir):
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with Client(endpoint, token="-", connect_timeout=0.3, retries=0) as c:
                return c.hello(auth=False)
        except DaemonUnavailable:
            time.sleep(0.2)
    raise AssertionError("daemon did not come up")


def test_second_daemon_refused_and_sigterm_cleans_up(mk_env):
    endpoint = f"ipc://{mk_env}/rt/d.sock"
    first = _serve(mk_env, endpoint)
    try:
        _wait_ready(endpoint, mk_env)
        second = _serve(mk_env, endpoint)
        _, err = second.communicate(timeout=60)
        assert second.returncode != 0 and "already serving" in err and str(first.pid) in err
        assert Path(endpoint[6:]).exists()
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)
        assert first.returncode == 0
        assert not Path(endpoint[6:]).exists(), "socket file left behind"
    finally:
        if first.poll() is None:
            first.kill()


def test_restart_after_a_crash_removes_the_stale_socket(mk_env):
    endpoint = f"ipc://{mk_env}/rt/d.sock"
    first = _serve(mk_env, endpoint)
    _wait_ready(endpoint, mk_env)
    first.kill()  # no clean-up: the socket file stays
    first.wait()
    assert Path(endpoint[6:]).exists()
    again = _serve(mk_env, endpoint)
    try:
        assert _wait_ready(endpoint, mk_env)["server"] == "mattekit"
    finally:
        again.terminate()
        again.wait(30)


def test_shutdown_op_stops_the_daemon(start_daemon):
    from mattekit.engine import Engine

    d = start_daemon(engine=Engine(learned=False))
    with Client(d.endpoint, token=d.token, retries=0) as c:
        assert c.shutdown()["stopping"] is True
    deadline = time.time() + 20
    while time.time() < deadline and Path(d.endpoint[6:]).exists():
        time.sleep(0.1)
    assert not Path(d.endpoint[6:]).exists()


def test_cli_stop_of_a_separate_daemon_is_answered_before_it_goes(mk_env):
    """`mattekit stop` must see the daemon's "stopping" reply, not its closed connection."""
    endpoint = f"ipc://{mk_env}/rt/d.sock"
    daemon = _serve(mk_env, endpoint)
    try:
        _wait_ready(endpoint, mk_env)
        env = dict(os.environ, PYTHONPATH=str(ROOT / "backend"))
        stop = subprocess.run([sys.executable, "-m", "mattekit", "--endpoint", endpoint, "stop"],
                              env=env, capture_output=True, text=True, timeout=60)
        assert stop.returncode == 0 and "stopping" in stop.stdout, stop.stderr
        daemon.wait(timeout=30)
        assert daemon.returncode == 0 and not Path(endpoint[6:]).exists()
    finally:
        if daemon.poll() is None:
            daemon.kill()


@pytest.mark.parametrize("hw", [(1, 1), (1, 9), (9, 1), (2, 2)])
def test_degenerate_sizes_with_soft_alpha_are_served(daemon, hw):
    _, c = daemon
    h, w = hw
    img = np.full((h, w, 4), 255, np.uint8)
    img[..., 0] = 40
    soft = np.full((h, w), 128, np.uint8)
    dec = c.decontaminate(img, soft, outputs=["foreground"])
    assert dec.foreground.shape == (h, w, 4) and np.array_equal(dec.foreground[..., 3], soft)
    ref = c.refine(img, soft, band_px=2)
    assert ref.alpha.shape == (h, w) and ref.alpha.dtype == np.uint8


# ---------------------------------------------------------------- edge controls and model notes


@pytest.mark.parametrize("params, names", [
    ({"feather": 50}, "feather"), ({"shift_edge": "-9000px"}, "shift_edge"), ({"smooth": "3 inches"}, "smooth"),
    ({"contrast": 200}, "contrast"),
])
def test_bad_edge_controls_are_refused_naming_them_and_the_daemon_keeps_serving(daemon, dealer, params, names):
    d, c = daemon
    img, _, g = composite()
    spec_i, a = P.buffer_from_array("image", to_u8(img))
    spec_g, gg = P.buffer_from_array("guidance", to_u8(g), order="Y")
    header = P.make_header("refine", token=d.token, params=params, buffers=[spec_i.to_json(), spec_g.to_json()])
    reply, _ = raw(dealer, [P.encode_header(header), a.tobytes(), gg.tobytes()])
    assert reply["op"] == "error" and reply["code"] == P.E_BAD_PARAMS and f"'{names}'" in reply["message"], reply
    assert c.ping()["pong"] is True
    assert c.refine(to_u8(img), to_u8(g), band_px=12, shift_edge="2px").alpha.shape == g.shape  # still serving jobs


def test_edge_controls_change_the_returned_alpha_and_zeros_change_nothing(daemon):
    _, c = daemon
    img, _, g = composite(80, 100)
    plain = c.refine(img, g, band_px=12, alpha_dtype="f32").alpha
    zeros = c.refine(img, g, band_px=12, alpha_dtype="f32", smooth=0, feather="0px", contrast=0, shift_edge=0).alpha
    assert np.array_equal(plain.view(np.uint32), zeros.view(np.uint32))
    grown = c.refine(img, g, band_px=12, alpha_dtype="f32", shift_edge="3px").alpha
    assert np.sqrt((grown >= 0.5).sum() / np.pi) - np.sqrt((plain >= 0.5).sum() / np.pi) == pytest.approx(3, abs=1)
    soft = c.refine(img, g, band_px=12, alpha_dtype="f32", feather=2, outputs=["alpha", "foreground"])  # 2 % of 80 px: sigma 1.6
    a = soft.alpha
    assert ((a > 0.02) & (a < 0.98)).sum() > ((plain > 0.02) & (plain < 0.98)).sum()
    # the colours were estimated for the adjusted matte: the cut-out's alpha is that matte
    assert np.abs(soft.foreground[..., 3].astype(np.float32) - a).max() < 1e-6


def test_hello_notes_each_installed_model_from_the_registry(start_daemon, mk_env):
    from mattekit.engine import Engine

    weights = Path(mk_env) / "data" / "weights"
    weights.mkdir(parents=True)
    (weights / "my-prn.md").write_text("# my-prn\n\nRefine model: a PRN trained at home. More text.\n\n| a | b |\n")
    (weights / "registry.json").write_text(json.dumps({
        "my-prn": {"arch": "prn", "task": "guided", "file": "my-prn.safetensors", "card": "my-prn.md",
                   "licence": "GPL-3.0-or-later (weights trained by mattekit)", "auto": False},
        "other-prn": {"arch": "prn", "task": "guided", "file": "o.safetensors", "card": "A second refiner; long details.",
                      "licence": "Apache-2.0; see o.LICENSE.txt"},
    }))
    d = start_daemon(engine=Engine(learned=True))
    with Client(d.endpoint, token=d.token, connect_timeout=30, retries=0) as c:
        hello = c.hello()
    notes = hello["model_notes"]
    assert set(notes) == set(hello["models"]["guided"]) | {"classical"} == {"classical", "my-prn", "other-prn"}
    assert notes["my-prn"] == "Refine model: a PRN trained at home; GPL-3.0-or-later; not chosen by auto"
    assert notes["other-prn"] == "A second refiner; Apache-2.0"
    assert all("\n" not in n for n in notes.values()) and "no model" in notes["classical"]
