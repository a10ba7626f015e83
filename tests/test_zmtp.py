"""The pure-Python ZMTP fallback and the editors' client against the real pyzmq daemon."""

from __future__ import annotations

import shutil
import socket
import struct
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

from mattekit import protocol as P
from mattekit import zmtp
from mattekit.client import Client
from mattekit.daemon import Daemon
from mattekit.editor_client import EditorClient, EditorError
from netutil import free_port

TOKEN = "test-token-zmtp"




@pytest.fixture(params=["ipc", "tcp"])
def daemon(request, monkeypatch):
    # Short path: AF_UNIX paths are limited to ~107 bytes, pytest's tmp_path can be longer.
    d = Path(tempfile.mkdtemp(prefix="mk-zmtp-"))
    monkeypatch.setenv("MATTEKIT_RUNTIME_DIR", str(d / "run"))
    monkeypatch.setenv("MATTEKIT_CONFIG_DIR", str(d / "cfg"))
    endpoint = f"ipc://{d / 'run' / 'd.sock'}" if request.param == "ipc" else f"tcp://127.0.0.1:{free_port()}"
    from mattekit.engine import Engine

    # The classical engine: this tests the transport, and its colours are deterministic.
    dmn = Daemon(endpoint, token=TOKEN, engine=Engine(learned=False))
    ready = threading.Event()
    t = threading.Thread(target=dmn.serve, kwargs={"ready": ready.set, "install_signals": False}, daemon=True)
    t.start()
    assert ready.wait(30)
    yield endpoint
    dmn.stop()
    t.join(15)
    shutil.rmtree(d, ignore_errors=True)


def test_frame_header_short_and_long():
    assert zmtp.frame_header(0, more=False) == b"\x00\x00"
    assert zmtp.frame_header(255, more=True) == b"\x01\xff"
    # 256 bytes no longer fits the 1-byte size: LONG flag and an 8-byte big-endian size.
    assert zmtp.frame_header(256, more=False) == b"\x02" + struct.pack(">Q", 256)
    assert zmtp.frame_header(5, more=False, command=True) == b"\x04\x05"


def test_ready_properties_round_trip():
    props = zmtp.parse_properties(zmtp.ready_properties(b"DEALER", b"me"))
    assert props == {"Socket-Type": b"DEALER", "Identity": b"me"}


def test_handshake_and_hello(daemon):
    plain = (P.PLAIN_USERNAME.encode(), TOKEN.encode()) if daemon.startswith("tcp://") else None
    with zmtp.ZmtpDealer(daemon, timeout=5, plain=plain) as d:
        assert d.peer_properties["Socket-Type"] == b"ROUTER"
        d.send_multipart([P.encode_header(P.make_header("hello", id="h1"))])
        reply = d.recv_multipart(5)
        assert reply is not None and len(reply) == 1
        header = P.decode_header(reply[0])
        assert (header["op"], header["id"], header["server"]) == ("result", "h1", "mattekit")
        assert "ops" not in header  # no token: the short answer
        assert d.recv_multipart(0.2) is None  # nothing more is coming


@pytest.mark.parametrize("transport", ["zmtp", "pyzmq"])
def test_editor_client_control_ops(daemon, transport):
    with EditorClient(daemon, TOKEN, transport=transport) as c:
        assert c.transport_name == transport
        info = c.hello()
        assert info["protocol_version"] == P.PROTOCOL_VERSION and "refine" in info["ops"]
        assert c.ping()["pong"] is True
    with EditorClient(daemon, "wrong", transport=transport) as c, pytest.raises(EditorError) as e:
        c.ping()
    assert e.value.code == P.E_UNAUTHORIZED


def _square(h=48, w=64):
    img = np.zeros((h, w, 4), np.uint8)
    img[..., 3] = 255
    img[..., 2] = 180
    img[12:36, 20:44, :3] = (230, 60, 20)
    guide = np.zeros((h, w), np.uint8)
    guide[10:38, 18:46] = 255
    return img, guide


def test_refine_job_matches_reference_client(daemon):
    img, guide = _square()
    h, w = guide.shape
    stages: list[str] = []
    with EditorClient(daemon, TOKEN, transport="zmtp") as c:
        header, bufs = c.run_job(
            "refine",
            [(P.BufferSpec("image", w, h, "u8", "RGBA"), img.tobytes()), (P.BufferSpec("guidance", w, h, "u8", "Y"), guide.tobytes())],
            {"outputs": ["alpha"], "band_px": 4},
            progress=lambda stage, frac, hd: stages.append(stage),
        )
    spec, data = bufs["alpha"]
    assert (spec.width, spec.height, spec.dtype, spec.order) == (w, h, "u8", "Y")
    alpha = np.frombuffer(data, np.uint8).reshape(h, w)
    with Client(daemon, TOKEN) as ref:
        expected = ref.refine(img, guide, outputs=["alpha"], band_px=4).alpha
    np.testing.assert_array_equal(alpha, expected)
    assert stages[0] == "queued" and "alpha" in stages
    assert alpha[24, 32] == 255 and alpha[2, 2] == 0  # inside the square / far background


def test_job_error_is_raised_with_daemon_code(daemon):
    img, guide = _square()
    with EditorClient(daemon, TOKEN, transport="zmtp") as c, pytest.raises(EditorError) as e:
        c.run_job("refine", [(P.BufferSpec("image", 64, 48, "u8", "RGBA"), img.tobytes()),
                             (P.BufferSpec("guidance", 64, 48, "u8", "Y"), guide.tobytes())], {"band_px": 0})
    assert e.value.code == P.E_BAD_PARAMS and "band_px" in e.value.message


def test_large_message_round_trip(daemon):
    """49 MB each way: long frames in both directions through the fallback."""
    h = w = 1750  # 1750 * 1750 * 16 bytes = 49 MB of RGBA float32
    rng = np.random.default_rng(1)
    img = rng.random((h, w, 4), dtype=np.float32)
    img[..., 3] = 1.0
    alpha = np.zeros((h, w), np.float32)
    alpha[:, w // 2:] = 1.0  # hard edge: colours are kept where alpha is 1
    with EditorClient(daemon, TOKEN, transport="zmtp") as c:
        header, bufs = c.run_job(
            "decontaminate",
            [(P.BufferSpec("image", w, h, "f32", "RGBA"), memoryview(img).cast("B")), (P.BufferSpec("alpha", w, h, "f32", "Y"), alpha.tobytes())],
            {"amount": 1.0},
        )
    spec, data = bufs["foreground"]
    assert spec.nbytes == len(data) == h * w * 16 >= 48_000_000
    fg = np.frombuffer(data, np.float32).reshape(h, w, 4)
    np.testing.assert_array_equal(fg[:, w // 2 + 8:, :3], img[:, w // 2 + 8:, :3])
    np.testing.assert_array_equal(fg[..., 3], alpha)


def test_unavailable_daemon_is_reported_quickly(tmp_path):
    endpoint = f"ipc://{tempfile.gettempdir()}/mk-nothing-{id(tmp_path)}.sock"
    with EditorClient(endpoint, "t", transport="zmtp", retries=0, connect_timeout=1) as c, pytest.raises(EditorError) as e:
        c.ping()
    assert e.value.code == P.E_UNAVAILABLE and "mattekit serve" in e.value.message


def test_zmtp_refuses_a_non_zmq_peer():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def serve():
        conn, _ = srv.accept()
        conn.recv(64)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"x" * 64)
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with pytest.raises(ConnectionError, match="not a ZeroMQ"):
        zmtp.ZmtpDealer(f"tcp://127.0.0.1:{port}", timeout=3)
    t.join(5)
    srv.close()


def test_pyzmq_transport_reports_a_missing_ipc_socket_at_once(tmp_path):
    endpoint = f"ipc://{tmp_path}/none.sock"
    with EditorClient(endpoint, "t", transport="pyzmq", retries=0) as c, pytest.raises(EditorError) as e:
        c.run_job("refine", [(P.BufferSpec("image", 1, 1, "u8", "RGBA"), b"\0" * 4), (P.BufferSpec("guidance", 1, 1, "u8", "Y"), b"\0")], {})
    assert e.value.code == P.E_UNAVAILABLE and "no socket file" in e.value.message
