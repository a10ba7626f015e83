"""Security guarantees of the daemon (docs/security.md): auth on every op, private files, loopback, CURVE."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from mattekit import config
from mattekit import protocol as P
from mattekit.client import Client, DaemonUnavailable, MatteError
from mattekit.daemon import Daemon, SetupError, is_loopback
from mattekit.editor_client import EditorClient, EditorError
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
            # Nothing about the token (not even where it lives) for a peer that lacks it.
            assert str(config.token_path()) not in reply["message"] and "token" in reply["message"]
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


# ---------------------------------------------------------------- another local user (run as root: CI is)

OTHER_UID = 65534  # nobody
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by every user, unlike a venv or pyenv under /root
needs_second_uid = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists(SYSTEM_PYTHON),
    reason="needs root, setpriv and /usr/bin/python3 to act as a second user",
)

# Runs as the other user: create the victim's runtime dir first and listen in the daemon's place.
SQUATTER = r"""
import os, socket, sys
d = sys.argv[1]
os.makedirs(d, mode=0o777, exist_ok=True)
os.chmod(d, 0o777)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(os.path.join(d, "daemon.sock"))
os.chmod(os.path.join(d, "daemon.sock"), 0o777)
s.listen(8)
s.settimeout(float(sys.argv[2]))
print("listening", flush=True)
got = 0
try:
    while True:
        c, _ = s.accept()
        c.settimeout(2)
        try:
            got += len(c.recv(65536))
        except OSError:
            pass
except socket.timeout:
    pass
print("received", got, flush=True)
"""


def as_other_user(*argv: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups", SYSTEM_PYTHON, "-I", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
    )


@pytest.fixture
def shared_base():
    """A directory both users can enter (like /tmp, but private to this test)."""
    base = tempfile.mkdtemp(prefix="mk-x-")
    os.chmod(base, 0o1777)
    yield Path(base)
    shutil.rmtree(base, ignore_errors=True)


@needs_second_uid
def test_a_squatted_runtime_dir_gets_neither_token_nor_pixels(shared_base, monkeypatch):
    rt = shared_base / "rt"
    monkeypatch.setenv("MATTEKIT_RUNTIME_DIR", str(rt))
    monkeypatch.setenv("MATTEKIT_CONFIG_DIR", str(shared_base / "cfg"))
    squatter = as_other_user("-c", SQUATTER, str(rt), "4")
    try:
        assert squatter.stdout.readline().strip() == "listening", squatter.stderr.read()
        assert (rt / "daemon.sock").stat().st_uid == OTHER_UID
        attempts = {
            "pyzmq": lambda: Client(token="the-victims-secret", retries=0, connect_timeout=1).refine(tagged_image(1), np.zeros((16, 16), np.uint8)),
            "zmtp": lambda: EditorClient(token="the-victims-secret", transport="zmtp", retries=0, connect_timeout=1).ping(),
        }
        for transport, attempt in attempts.items():
            with pytest.raises(EditorError) as e:
                attempt()
            assert e.value.code == P.E_UNSAFE_ENDPOINT, transport
            assert str(rt) in e.value.message and "nothing was sent" in e.value.message
        # ... and our own daemon refuses to serve from there, saying what to do.
        with pytest.raises(SetupError, match=f"belongs to uid {OTHER_UID}"):
            Daemon(token="t", engine=FakeEngine()).bind()
        out, _ = squatter.communicate(timeout=30)
        assert out.split() == ["received", "0"], "the impostor received bytes"
    finally:
        squatter.kill()


@needs_second_uid
def test_the_default_runtime_dir_cannot_be_made_by_another_user(shared_base, monkeypatch):
    home = shared_base / "home"
    home.mkdir(mode=0o755)
    for var in ("MATTEKIT_RUNTIME_DIR", "XDG_RUNTIME_DIR", "XDG_STATE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    rt = config.runtime_dir()
    assert rt.is_relative_to(home), rt  # not in a shared directory such as /tmp
    other = as_other_user("-c", "import os, sys; os.makedirs(sys.argv[1])", str(rt))
    _, err = other.communicate(timeout=30)
    assert other.returncode != 0 and "PermissionError" in err
    assert not rt.exists()


def test_two_daemons_with_different_runtime_dirs_cannot_share_an_endpoint(start_daemon, mk_env, monkeypatch):
    first = start_daemon(engine=FakeEngine())
    monkeypatch.setenv("MATTEKIT_RUNTIME_DIR", f"{mk_env}/other-rt")
    second = Daemon(first.endpoint, token=first.token, engine=FakeEngine())
    with pytest.raises(SetupError, match="already serving"):
        second.bind()
    with Client(first.endpoint, token=first.token, retries=0) as c:
        assert c.ping()["pong"] is True  # the first one's socket is still there and served
    assert not Path(f"{mk_env}/other-rt").exists() or not any(Path(f"{mk_env}/other-rt").iterdir())


def test_a_refused_start_leaves_no_lock_file(mk_env):
    endpoint = f"ipc://{mk_env}/rt/d.sock"
    d = Daemon(endpoint, token="t", engine=FakeEngine())
    os.makedirs(f"{mk_env}/rt/d.sock")  # a directory where the socket must go: bind fails
    with pytest.raises(SetupError):
        d.bind()
    assert not Path(f"{mk_env}/rt/d.sock.lock").exists()


def test_the_curve_key_is_not_logged(start_daemon, caplog):
    with caplog.at_level("DEBUG", logger="mattekit.daemon"):
        start_daemon(endpoint=f"tcp://127.0.0.1:{free_port()}", allow_remote=True, engine=FakeEngine())
    public = (config.config_dir() / "curve.public").read_text()
    assert "curve.public" in caplog.text and public not in caplog.text


def test_the_cli_can_reach_a_curve_daemon_with_its_key(start_daemon, capsys, tmp_path):
    from mattekit.cli import main

    d = start_daemon(f"tcp://127.0.0.1:{free_port()}", allow_remote=True, engine=FakeEngine())
    key_file = config.config_dir() / "curve.public"
    assert main(["--endpoint", d.endpoint, "--server-key", str(key_file), "hello"]) == 0
    assert '"ops"' in capsys.readouterr().out
    bad = tmp_path / "key"
    bad.write_text("short")
    with pytest.raises(SystemExit, match="--server-key"):
        main(["--endpoint", d.endpoint, "--server-key", str(bad), "hello"])


# ---------------------------------------------------------------- tcp: authenticated at the handshake


def _attacker(endpoint: str, plain: tuple[bytes, bytes] | None):
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if plain is not None:
        s.plain_username, s.plain_password = plain
    mon = s.get_monitor_socket()
    s.connect(endpoint)
    return s, mon


def _handshake_outcome(mon, timeout_s: float = 30) -> str:
    from zmq.utils.monitor import recv_monitor_message

    failed = {zmq.EVENT_HANDSHAKE_FAILED_AUTH: "auth", zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol",
              zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "no_detail", zmq.EVENT_DISCONNECTED: "disconnected"}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if mon.poll(500):
            ev = recv_monitor_message(mon)["event"]
            if ev == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                return "succeeded"
            if ev in failed:
                return failed[ev]
    return "no outcome"


def test_unauthenticated_tcp_peers_cannot_make_the_daemon_allocate(mk_env):
    from test_reliability import proc_usage, spawn_daemon

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = spawn_daemon(endpoint, "fast")
    attackers = []
    try:
        rss_before, _ = proc_usage(proc.pid)
        big = np.zeros(256 << 20, np.uint8)  # 4 frames of 256 MiB: one 1 GiB message
        header = P.encode_header(P.make_header("refine", token="guess", buffers=[]))
        for plain in (None, (P.PLAIN_USERNAME.encode(), b"guess")):
            s, mon = _attacker(endpoint, plain)
            s.send_multipart([header, big, big, big, big], copy=False)
            attackers.append((s, mon))
        # libzmq sends a message only after the handshake: refused handshakes mean nothing arrived.
        # NULL against PLAIN: a mechanism mismatch, which libzmq reports as a protocol failure or
        # without detail depending on which side reads the greeting first; PLAIN: a wrong token.
        null, plain = (_handshake_outcome(mon) for _, mon in attackers)
        assert null in ("protocol", "no_detail", "disconnected") and plain == "auth", (null, plain)
        with Client(endpoint, token=config.token_path().read_text().strip(), retries=0) as c:
            assert c.ping()["pong"] is True
        rss_after, _ = proc_usage(proc.pid)
        assert rss_after - rss_before < 100 * 1024, f"daemon RSS grew by {(rss_after - rss_before) // 1024} MiB"
    finally:
        for s, mon in attackers:
            s.disable_monitor()
            mon.close(0)
            s.close(0)
        proc.terminate()
        proc.wait(30)


def test_wrong_tokens_on_tcp_are_refused_at_the_handshake_and_paced(start_daemon):
    d = start_daemon(f"tcp://127.0.0.1:{free_port()}", engine=FakeEngine())
    for transport in ("pyzmq", "zmtp"):
        with EditorClient(d.endpoint, "wrong", transport=transport, retries=0, connect_timeout=10) as c:
            with pytest.raises(EditorError) as e:
                c.ping()
        assert e.value.code == P.E_UNAUTHORIZED and "handshake" in e.value.message, transport
    attackers = [_attacker(d.endpoint, (P.PLAIN_USERNAME.encode(), b"guess-%d" % i)) for i in range(5)]
    try:
        assert [_handshake_outcome(mon) for _, mon in attackers] == ["auth"] * 5
    finally:
        for s, mon in attackers:
            s.disable_monitor()
            mon.close(0)
            s.close(0)
    sent = list(d.denials_sent)
    assert len(sent) >= 7 and d.stats["auth_failures"] >= 7
    assert min(b - a for a, b in zip(sent, sent[1:])) >= config.AUTH_FAILURE_INTERVAL_S
