"""Security guarantees of the daemon (docs/security.md): auth on every op, private files, loopback, CURVE."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import zmq

from mattekit import config
from mattekit import protocol as P
from mattekit.client import Client, DaemonUnavailable, MatteError
from mattekit.daemon import Daemon, SetupError, is_loopback
from test_reliability import FakeEngine, dealer, final_replies, job_frames, recv, tagged_image
from netutil import free_port




def _wrong_tokens(tok: str) -> dict[str, object]:
    return {
        "missing": P.make_header,  # marker: no token field at all
        "null": None,
        "number": 12345,
        "list": [tok],
        "object": {"token": tok},
        "empty": "",
        "same_length": tok[:-1] + ("x" if tok[-1] != "x" else "y"),
        "prefix": tok[:-1],
        "longer": tok + "x",
        "surrogate": "\ud800" * len(tok),
    }


@pytest.mark.parametrize("op", [o for o in P.REQUEST_OPS if o != "hello"])
def test_every_op_but_hello_needs_the_token(start_daemon, op):
    eng = FakeEngine()
    d = start_daemon(engine=eng)
    s = dealer(d.endpoint)
    try:
        for kind, tok in _wrong_tokens(d.token).items():
            if op in P.JOB_OPS:
                _, frames = job_frames(d.token, tag=1)
                header = P.decode_header(frames[0])
                header["op"] = op
            else:
                frames = [None]
                header = P.make_header(op, target="x")
            header.pop("token", None)
            if tok is not P.make_header:
                header["token"] = tok
            frames[0] = P.encode_header(header)
            s.send_multipart(frames)
            reply = final_replies(s, [header["id"]])[header["id"]]
            assert reply["op"] == "error" and reply["code"] == P.E_UNAUTHORIZED, (kind, reply)
            assert str(config.token_path()) in reply["message"]
        assert not eng.calls and not d.jobs
        with Client(d.endpoint, token=d.token, retries=0) as c:
            assert c.ping()["pong"] is True  # shutdown without a token did not stop it
    finally:
        s.close()


def test_hello_without_a_valid_token_tells_only_the_version(start_daemon):
    d = start_daemon(engine=FakeEngine())
    s = dealer(d.endpoint)
    try:
        for kind, tok in _wrong_tokens(d.token).items():
            header = P.make_header("hello")
            if tok is not P.make_header:
                header["token"] = tok
            s.send_multipart([P.encode_header(header)])
            reply, _ = recv(s)
            assert reply["op"] == "result", kind
            assert set(reply) == {"protocol", "op", "id", "server", "version", "protocol_version"}, kind
    finally:
        s.close()


def test_token_comparison_uses_compare_digest(start_daemon, monkeypatch):
    import hmac

    from mattekit import daemon as dm

    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(dm.hmac, "compare_digest", spy)
    d = start_daemon(engine=FakeEngine())
    with Client(d.endpoint, token=d.token[:5], retries=0) as c:
        with pytest.raises(MatteError):
            c.ping()
    with Client(d.endpoint, token=d.token, retries=0) as c:
        c.ping()
    assert (5, len(d.token)) in calls and (len(d.token), len(d.token)) in calls


# ---------------------------------------------------------------- files


def test_ipc_dir_is_0700_and_socket_0600(start_daemon):
    d = start_daemon(engine=FakeEngine())
    sock = d.endpoint[len("ipc://"):]
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.getuid()
    assert stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(config.runtime_dir()).st_mode) == 0o700


@pytest.mark.parametrize("which", ["runtime", "config"])
def test_loose_directories_are_refused_with_the_fix(mk_env, which):
    path = config.runtime_dir() if which == "runtime" else config.config_dir()
    path.mkdir(parents=True, mode=0o755)
    os.chmod(path, 0o755)
    with pytest.raises(SetupError, match=f"chmod 700 {path}"):
        Daemon(f"ipc://{mk_env}/rt/daemon.sock", engine=FakeEngine()).serve(install_signals=False)


@pytest.mark.skipif(os.getuid() != 0, reason="chown to another user needs root")
def test_a_directory_owned_by_someone_else_is_refused(mk_env):
    path = config.runtime_dir()
    path.mkdir(parents=True, mode=0o700)
    os.chown(path, 54321, 54321)
    with pytest.raises(SetupError, match="belongs to uid 54321"):
        Daemon(f"ipc://{path}/daemon.sock", token="t", engine=FakeEngine()).serve(install_signals=False)


# ---------------------------------------------------------------- network exposure


@pytest.mark.parametrize(
    "endpoint",
    ["tcp://0.0.0.0:5599", "tcp://*:5599", "tcp://127.0.0.1.nip.io:5599", "tcp://eth0:5599", "tcp://10.0.0.1:5599", "tcp://[::]:5599", "ws://127.0.0.1:5599", "udp://127.0.0.1:5599"],
)
def test_non_loopback_or_unknown_transports_are_refused(mk_env, endpoint):
    with pytest.raises(SetupError):
        Daemon(endpoint, token="t", engine=FakeEngine())


def test_loopback_forms_are_recognised():
    assert all(is_loopback(e) for e in ["tcp://127.0.0.1:1", "tcp://127.3.4.5:1", "tcp://[::1]:1", "tcp://localhost:1", "ipc:///tmp/x"])


def test_allow_remote_requires_curve_even_on_loopback(start_daemon):
    d = start_daemon(f"tcp://127.0.0.1:{free_port()}", allow_remote=True, engine=FakeEngine())
    key_file = config.config_dir() / "curve.public"
    assert d.curve and d.curve_public == key_file.read_bytes()
    assert stat.S_IMODE(os.stat(config.config_dir() / "curve.secret").st_mode) == 0o600
    with Client(d.endpoint, token=d.token, connect_timeout=1.0, retries=0) as plain:
        with pytest.raises(DaemonUnavailable):
            plain.hello(auth=False)
    wrong, _ = zmq.curve_keypair()
    with Client(d.endpoint, token=d.token, connect_timeout=1.0, retries=0, server_key=wrong) as c:
        with pytest.raises(DaemonUnavailable):
            c.hello(auth=False)
    with Client(d.endpoint, token=d.token, retries=0, server_key=key_file.read_bytes()) as c:
        assert "ops" in c.hello()
        assert c.refine(tagged_image(9), np.zeros((16, 16), np.uint8), model="x").alpha[0, 0] == 9
    # CURVE encrypts; the token is still required on top of it.
    with Client(d.endpoint, token="wrong", retries=0, server_key=key_file.read_bytes()) as c:
        with pytest.raises(MatteError) as e:
            c.ping()
        assert e.value.code == P.E_UNAUTHORIZED


def test_curve_can_be_forced_on_an_ipc_socket(start_daemon):
    d = start_daemon(engine=FakeEngine(), curve=True)
    with Client(d.endpoint, token=d.token, connect_timeout=1.0, retries=0) as plain:
        with pytest.raises(DaemonUnavailable):
            plain.ping()
    with Client(d.endpoint, token=d.token, retries=0, server_key=d.curve_public) as c:
        assert c.ping()["pong"] is True


# ---------------------------------------------------------------- no file access from the wire


@pytest.mark.parametrize("op", P.JOB_OPS)
@pytest.mark.parametrize("key", ["path", "output", "weights", "file", "checkpoint"])
def test_path_like_params_are_refused(daemon, op, key):
    d, c = daemon
    inputs = {"image": (tagged_image(1), None, "srgb")}
    for extra in P.JOB_INPUTS[op][1:]:
        inputs[extra] = (np.zeros((16, 16), np.uint8), "Y", "srgb")
    with pytest.raises(MatteError) as e:
        c.run_job(op, inputs, {key: "/etc/passwd"})
    assert e.value.code == P.E_BAD_PARAMS and key in e.value.message


@pytest.mark.parametrize("model", ["../../../../etc/passwd", "/etc/passwd", "~/.ssh/id_rsa", "classical/../x"])
def test_model_names_are_looked_up_never_opened(daemon, model):
    d, c = daemon
    with pytest.raises(MatteError) as e:
        c.refine(tagged_image(1), np.zeros((16, 16), np.uint8), model=model)
    assert e.value.code == P.E_NO_MODEL
