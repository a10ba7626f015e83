import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Tests run against the source tree even when the package is not installed.
for sub in ("backend", "training", "tests"):
    p = str(ROOT / sub)
    if p not in sys.path:
        sys.path.insert(0, p)

os.environ.setdefault("OMP_NUM_THREADS", "2")

import atexit
import shutil
import tempfile
import threading

import pytest
from hypothesis import settings

# Hypothesis profiles. CI (`.ci/run`) picks "ci": the same examples on every run, so a
# submission is never refused or passed by chance. People get "dev" (random, a fresh
# search each run) and `make fuzz` runs "fuzz" (random and ten times longer).
settings.register_profile("ci", derandomize=True, database=None, max_examples=200, print_blob=True)
settings.register_profile("dev", max_examples=200, print_blob=True)
settings.register_profile("fuzz", max_examples=2000, database=None, print_blob=True)
settings.load_profile(os.environ.get("MATTEKIT_HYPOTHESIS_PROFILE", "dev"))


# A test that reads the data kit says so: `@pytest.mark.kit("pets", ...)` (names of
# datasets.KIT_FOLDERS). It skips where those folders are missing (a user's clone has no
# ../shared); every other test sees an empty kit, so a test that needs the kit but is not
# marked fails here rather than on a user's machine.
_NO_KIT = tempfile.mkdtemp(prefix="mk-nokit-")
atexit.register(shutil.rmtree, _NO_KIT, True)


@pytest.fixture(autouse=True)
def _data_kit(request, monkeypatch):
    mark = request.node.get_closest_marker("kit")
    if mark is None:
        monkeypatch.setenv("MATTEKIT_SHARED_DATA", _NO_KIT)
        return
    from mattekit_training.datasets import kit_missing

    missing = kit_missing(mark.args)
    if missing:
        pytest.skip(f"the data kit is not here: {', '.join(map(str, missing))} (set MATTEKIT_SHARED_DATA)")


@pytest.fixture
def mk_env(monkeypatch):
    """Private runtime/config dirs (short paths: AF_UNIX paths are limited to ~107 bytes)."""
    base = tempfile.mkdtemp(prefix="mk-")
    monkeypatch.setenv("MATTEKIT_RUNTIME_DIR", f"{base}/rt")
    monkeypatch.setenv("MATTEKIT_CONFIG_DIR", f"{base}/cfg")
    monkeypatch.setenv("MATTEKIT_DATA_DIR", f"{base}/data")
    # Tests choose their models: the weights shipped in the package are hidden unless a test asks.
    monkeypatch.setenv("MATTEKIT_SHIPPED_WEIGHTS_DIR", f"{base}/shipped")
    monkeypatch.delenv("MATTEKIT_ENDPOINT", raising=False)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def start_daemon(mk_env):
    """Factory: start a real daemon (in a thread of this process) on a real socket; stopped at teardown."""
    from mattekit.daemon import Daemon

    started = []

    def start(endpoint: str | None = None, **kwargs):
        endpoint = endpoint or f"ipc://{mk_env}/rt/daemon.sock"
        d = Daemon(endpoint, **kwargs)
        ready = threading.Event()
        t = threading.Thread(target=d.serve, kwargs={"ready": ready.set, "install_signals": False}, daemon=True)
        t.start()
        assert ready.wait(20), "daemon did not start"
        started.append((d, t))
        return d

    yield start
    for d, t in started:
        d.stop()
        t.join(20)


@pytest.fixture
def daemon(start_daemon):
    """A running classical-only daemon and a connected client."""
    from mattekit.client import Client
    from mattekit.engine import Engine

    d = start_daemon(engine=Engine(learned=False))
    client = Client(d.endpoint, token=d.token, connect_timeout=30, retries=0, timeout=300)
    yield d, client
    client.close()
