"""Sandboxed editors (#19): Flatpak GIMP reaches the host's daemon through its own folder, and a
daemon auto-started from an AppImage Krita does not inherit the AppImage's environment.

The Flatpak test is real isolation: the plug-in's client runs in bubblewrap (the sandbox Flatpak
is built on) with a private /tmp, /run and XDG_RUNTIME_DIR, the network unshared and $HOME hidden
except the app's ~/.var/app/org.gimp.GIMP; the daemon runs outside, as a real process.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mattekit import editor_client as ec, sandbox

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "tests" / "sandbox" / "plugin_probe.py"
PLUGIN_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable  # the editors' Python
#: Per transport, a Python to run the plug-in's side in: the editors' own (pyzmq hidden), or ours (which has pyzmq).
TRANSPORT_PYTHON = {"no-pyzmq": PLUGIN_PYTHON, "pyzmq": sys.executable}


@pytest.fixture
def home(monkeypatch):
    """A fresh $HOME (short: ipc socket paths are limited to 107 bytes) with nothing else pointing elsewhere."""
    base = Path(tempfile.mkdtemp(prefix="mkh-", dir="/tmp"))
    for key in list(os.environ):
        if key.startswith(("MATTEKIT_", "XDG_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(base))
    yield base
    shutil.rmtree(base, ignore_errors=True)


def host_env(home: Path, **extra: str) -> dict[str, str]:
    """The host user's environment for real daemon and CLI processes: only $HOME decides where things are."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MATTEKIT_", "XDG_"))}
    env.update({"HOME": str(home), "PYTHONPATH": str(REPO / "backend"), **extra})
    return env


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mattekit", *args], env=host_env(home), capture_output=True, text=True, timeout=120)


def bwrap() -> str:
    """bubblewrap, installed with apt when missing (root only, as the editor tests do); skips where it cannot run."""
    exe = shutil.which("bwrap")
    if exe is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        apt = ["apt-get", "-o", "DPkg::Lock::Timeout=900"]
        if subprocess.run([*apt, "install", "-y", "-q", "bubblewrap"], env=env, capture_output=True).returncode:
            subprocess.run([*apt, "update", "-q"], env=env, capture_output=True)
            subprocess.run([*apt, "install", "-y", "-q", "bubblewrap"], env=env, capture_output=True)
        exe = shutil.which("bwrap")
    if exe is None:
        pytest.skip("bubblewrap is not installed (apt install bubblewrap)")
    if subprocess.run([exe, "--ro-bind", "/", "/", "--unshare-net", "true"], capture_output=True).returncode:
        pytest.skip("bubblewrap cannot create a sandbox on this machine")
    return exe


def flatpak_run(exe: str, home: Path, app: str, *argv: str) -> subprocess.CompletedProcess:
    """argv inside a Flatpak-like sandbox of `app`: private /tmp, /run and runtime dir, no network,
    $HOME empty but for ~/.var/app/<app> (same path inside), Flatpak's XDG variables."""
    root = sandbox.flatpak_root(app)
    runtime = f"/run/user/{os.getuid()}"
    cmd = [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/run",
           "--tmpfs", str(home), "--bind", str(root), str(root), "--ro-bind", str(PROBE), "/tmp/plugin_probe.py",
           # the Pythons that run the plug-in's side stay visible even when they live under /tmp (a CI checkout)
           *[arg for p in sorted({sys.prefix, sys.base_prefix}) for arg in ("--ro-bind", p, p)],
           "--dir", runtime, "--unshare-net", "--unshare-pid", "--die-with-parent", "--clearenv",
           "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", str(home), "--setenv", "XDG_RUNTIME_DIR", runtime,
           "--setenv", "XDG_CONFIG_HOME", str(root / "config"), "--setenv", "XDG_CACHE_HOME", str(root / "cache"),
           "--setenv", "XDG_DATA_HOME", str(root / "data"), *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def probe_result(run: subprocess.CompletedProcess) -> dict:
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


class HostDaemon:
    """`mattekit serve` as the user would run it on the host (default endpoint, so it serves the sandboxes)."""

    def __init__(self, home: Path, env: dict[str, str] | None = None):
        self.log = open(home / "serve.log", "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "mattekit", "serve"], env=env or host_env(home),
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while "ready on" not in Path(self.log.name).read_text():
            assert self.proc.poll() is None and time.monotonic() < deadline, Path(self.log.name).read_text()
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)
        self.log.close()


def test_install_plugin_flatpak_puts_the_plugin_in_the_app_and_registers_its_sandbox(home):
    run = run_cli(home, "install-plugin", "gimp", "--flatpak")
    assert run.returncode == 0, run.stderr
    assert "mattekit serve" in run.stdout and "sandbox" in run.stdout  # says what to run on the host
    app = home / ".var" / "app" / "org.gimp.GIMP"
    plugin = app / "config" / "GIMP" / "3.0" / "plug-ins" / "mattekit"
    assert os.access(plugin / "mattekit.py", os.X_OK)
    info = json.loads((plugin / "mattekit_bridge" / "install.json").read_text())
    assert info["sandbox"] == "flatpak:org.gimp.GIMP"
    assert info["endpoint"] == f"ipc://{app}/cache/mattekit/daemon.sock"
    assert info["token_file"] == str(app / "config" / "mattekit" / "token")
    host_token = (home / ".config" / "mattekit" / "token").read_text()
    copy = Path(info["token_file"])
    assert copy.read_text() == host_token and stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
    assert json.loads((home / ".config" / "mattekit" / "sandboxes.json").read_text()) == [
        {"app": "org.gimp.GIMP", "endpoint": info["endpoint"], "token_file": info["token_file"]}]
    # Krita's Flatpak too; installing again updates its entry instead of adding one
    for _ in range(2):
        assert run_cli(home, "install-plugin", "krita", "--flatpak").returncode == 0
    kapp = home / ".var" / "app" / "org.kde.krita"
    assert (kapp / "data" / "krita" / "pykrita" / "mattekit_krita" / "mattekit_bridge" / "install.json").exists()
    assert "enable_mattekit_krita=true" in (kapp / "config" / "kritarc").read_text()
    assert [s.app for s in sandbox.registered()] == ["org.gimp.GIMP", "org.kde.krita"]


def test_a_daemon_serves_each_sandbox_with_a_fresh_token_copy_and_a_second_daemon_leaves_it(start_daemon, mk_env, home, caplog):
    sb = sandbox.flatpak_sandbox("gimp")
    sb.token_file.parent.mkdir(parents=True)
    sb.token_file.write_text("stale")
    d = start_daemon(sandboxes=[sb])
    sock = Path(sb.endpoint[len("ipc://"):])
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert sb.token_file.read_text() == d.token  # rewritten at start: follows the host's token
    c = ec.EditorClient(sb.endpoint, token=sb.token_file.read_text(), connect_timeout=5, retries=0)
    try:
        assert c.request("ping")["running"] is False
    finally:
        c.close()
    other = start_daemon(f"ipc://{mk_env}/second.sock", sandboxes=[sb])
    assert "not serving the org.gimp.GIMP sandbox" in caplog.text  # the first daemon still holds it
    assert other._sandbox_locks == [] and d._sandbox_locks
    d.stop()
    deadline = time.monotonic() + 20
    while sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sock.exists()  # removed with the daemon that served it


@pytest.mark.parametrize("transport", ["no-pyzmq", "pyzmq"])
def test_a_plugin_in_a_flatpak_sandbox_runs_select_subject_on_the_host_daemon(home, transport):
    exe = bwrap()
    assert run_cli(home, "install-plugin", "gimp", "--flatpak").returncode == 0
    plugin = sandbox.flatpak_root("org.gimp.GIMP") / "config" / "GIMP" / "3.0" / "plug-ins" / "mattekit"
    # The sandbox really is one: the host's socket and token cannot be seen from inside.
    hidden = flatpak_run(exe, home, "org.gimp.GIMP", "sh", "-c", f"test -e {home}/.config/mattekit/token || echo hidden")
    assert hidden.stdout.strip() == "hidden", hidden.stderr
    daemon = HostDaemon(home)
    try:
        out = probe_result(flatpak_run(exe, home, "org.gimp.GIMP", TRANSPORT_PYTHON[transport], "/tmp/plugin_probe.py", str(plugin), transport, "no"))
        assert out["ok"], json.dumps(out)
        assert out["transport"] == ("zmtp" if transport == "no-pyzmq" else "pyzmq")
        assert out["sandbox"] == "flatpak:org.gimp.GIMP"
        assert out["n"] == 96 * 64 and out["inside"] > 200 and out["outside"] < 50  # the red disc is selected
    finally:
        daemon.stop()
    # No daemon: the sandbox never starts one itself (the host's command would run in the sandbox's /usr)
    out = probe_result(flatpak_run(exe, home, "org.gimp.GIMP", TRANSPORT_PYTHON[transport], "/tmp/plugin_probe.py", str(plugin), transport, "autostart"))
    assert not out["ok"] and out["code"] == "daemon_unavailable"
    assert "on the host, run" in out["message"] and "mattekit serve" in out["message"]


def test_a_daemon_started_from_an_appimage_krita_does_not_inherit_its_environment(home):
    """Krita's AppImage Python has no pyzmq, and sets PYTHONPATH and LD_LIBRARY_PATH into its mount.
    A fake mount whose numpy raises: a daemon that inherited PYTHONPATH could not even start."""
    appdir = home / "squashfs-root"
    (appdir / "usr" / "lib" / "python3" / "site-packages" / "numpy").mkdir(parents=True)
    (appdir / "usr" / "lib" / "python3" / "site-packages" / "numpy" / "__init__.py").write_text(
        "raise ImportError('the AppImage numpy was imported')\n")
    target = home / "pykrita"
    run = subprocess.run([sys.executable, "-m", "mattekit", "install-plugin", "krita", "--target", str(target)],
                         env=host_env(home), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    krita_env = host_env(home, APPDIR=str(appdir), APPIMAGE=str(home / "krita.appimage"),
                         PYTHONPATH=str(appdir / "usr" / "lib" / "python3" / "site-packages"),
                         LD_LIBRARY_PATH=str(appdir / "usr" / "lib"), QT_PLUGIN_PATH=str(appdir / "usr" / "plugins"),
                         KRITA_APP_DATA=str(appdir / "usr" / "share"))
    bridge = target / "mattekit_krita"
    pid = None
    try:
        run = subprocess.run([PLUGIN_PYTHON, str(PROBE), str(bridge), "no-pyzmq", "autostart"], env=krita_env,
                             capture_output=True, text=True, timeout=300)
        out = probe_result(run)
        assert out["ok"], json.dumps(out)
        assert out["transport"] == "zmtp" and out["sandbox"] is None
        lock = home / ".local" / "state" / "mattekit" / "run" / "daemon.sock.lock"
        pid = int(lock.read_text())
        environ = dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in kv)
        for key in ("APPDIR", "APPIMAGE", "LD_LIBRARY_PATH", "QT_PLUGIN_PATH", "KRITA_APP_DATA"):
            assert key not in environ, key
        assert environ["PYTHONPATH"] == str(REPO / "backend")  # install.json's own, not the AppImage's
        assert environ["HOME"] == str(home)
    finally:
        run_cli(home, "stop")
        if pid is not None:
            deadline = time.monotonic() + 30
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.1)


def test_the_environment_for_an_autostarted_daemon_drops_what_editors_set_for_themselves():
    environ = {"HOME": "/home/u", "PATH": "/usr/bin", "LANG": "C.UTF-8", "PYTHONPATH": "/opt/gimp/py",
               "LD_LIBRARY_PATH": "/tmp/.mount_krita/usr/lib", "APPDIR": "/tmp/.mount_krita",
               "KRITA_PLUGIN_PATH": "/tmp/.mount_krita/usr/lib/kritaplugins", "GI_TYPELIB_PATH": "/app/lib/girepository-1.0",
               "MATTEKIT_DATA_DIR": "/data/mk"}
    env = ec.daemon_environment(environ, {"PYTHONPATH": "/src/mattekit/backend"})
    assert env == {"HOME": "/home/u", "PATH": "/usr/bin", "LANG": "C.UTF-8", "MATTEKIT_DATA_DIR": "/data/mk",
                   "PYTHONPATH": "/src/mattekit/backend"}
    assert ec.daemon_environment({"APPDIR": "/", "PATH": "/usr/bin"}) == {"PATH": "/usr/bin"}  # "/" is no mount to match


def test_a_sandbox_socket_path_too_long_for_linux_is_refused_at_install(home, monkeypatch):
    monkeypatch.setenv("HOME", str(home / ("x" * 80)))
    with pytest.raises(ValueError, match="107 bytes"):
        sandbox.flatpak_sandbox("gimp")
