"""`mattekit install-plugin`: what lands where, and that the vendored bridge works alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mattekit import install
from mattekit.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home" / ".local" / "share"))
    monkeypatch.delenv("GIMP3_DIRECTORY", raising=False)
    monkeypatch.delenv("MATTEKIT_ENDPOINT", raising=False)
    return tmp_path / "home"


def test_gimp_install_default_location(home, capsys):
    assert cli_main(["install-plugin", "gimp"]) == 0
    folder = home / ".config" / "GIMP" / "3.0" / "plug-ins" / "mattekit"
    main = folder / "mattekit.py"
    assert main.is_file() and os.access(main, os.X_OK)  # GIMP ignores non-executable plug-ins
    assert (folder / "mattekit_logic.py").is_file()
    bridge = folder / "mattekit_bridge"
    for name in install.BRIDGE_MODULES + ("__init__.py", "install.json"):
        assert (bridge / name).is_file(), name
    assert (bridge / "zmtp.py").read_bytes() == (REPO / "backend" / "mattekit" / "zmtp.py").read_bytes()
    assert not list(folder.rglob("__pycache__"))
    info = json.loads((bridge / "install.json").read_text())
    assert info["command"] and Path(info["command"][0]).is_absolute()
    assert "plug-ins" in capsys.readouterr().out


def test_dry_run_writes_nothing(home, tmp_path, capsys):
    target = tmp_path / "t"
    assert install.install_plugin("gimp", dry_run=True, target=str(target)) == 0
    assert not target.exists() and not (home / ".config").exists()
    out = capsys.readouterr().out
    assert str(target / "mattekit") in out and "would copy" in out


def test_reinstall_replaces_stale_files(home, tmp_path):
    target = tmp_path / "plug-ins"
    assert install.install_plugin("gimp", dry_run=False, target=str(target)) == 0
    stale = target / "mattekit" / "old_module.py"
    stale.write_text("raise SystemExit")
    assert install.install_plugin("gimp", dry_run=False, target=str(target)) == 0
    assert not stale.exists()


def test_vendored_bridge_imports_without_mattekit_or_numpy(home, tmp_path):
    """The bridge must import in an editor Python that has neither mattekit nor NumPy."""
    target = tmp_path / "plug-ins"
    install.install_plugin("gimp", dry_run=False, target=str(target))
    folder = target / "mattekit"
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, *a):\n"
        "        if name.split('.')[0] in ('numpy', 'mattekit', 'zmq'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.path.insert(0, {str(folder)!r})\n"
        "from mattekit_bridge import editor_client, protocol\n"
        "import mattekit_logic\n"
        "c = editor_client.EditorClient('ipc:///nonexistent/x.sock', 't', retries=0, connect_timeout=0.5)\n"
        "print(c.transport_name, editor_client.install_info()['version'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "zmtp"  # no pyzmq: the fallback is chosen


def test_krita_kritarc_keeps_other_settings(home, tmp_path):
    if not (REPO / "plugins" / "krita" / "mattekit_krita").is_dir():
        pytest.skip("the Krita plug-in sources are not in this tree yet")
    rc = home / ".config" / "kritarc"
    rc.parent.mkdir(parents=True)
    rc.write_text("[General]\nfoo=1\n\n[python]\nenable_other=true\n\n[MainWindow]\nx=2\n")
    assert install.install_plugin("krita", dry_run=False, target=None) == 0
    pyk = home / ".local" / "share" / "krita" / "pykrita"
    assert (pyk / "mattekit_krita.desktop").is_file()
    assert (pyk / "mattekit_krita" / "mattekit_bridge" / "editor_client.py").is_file()
    text = rc.read_text()
    assert "foo=1" in text and "enable_other=true" in text and "x=2" in text
    assert "enable_mattekit_krita=true" in text.split("[MainWindow]")[0].split("[python]")[1]


@pytest.mark.parametrize(
    "before, expected",
    [
        ("", "[python]\nenable_x=true\n"),
        ("[a]\nk=v\n", "[a]\nk=v\n\n[python]\nenable_x=true\n"),
        ("[python]\nenable_x=false\nother=1\n", "[python]\nenable_x=true\nother=1\n"),
        ("[python]\nother=1\n\n[b]\nz=1\n", "[python]\nother=1\nenable_x=true\n\n[b]\nz=1\n"),
    ],
)
def test_set_ini_value(before, expected):
    assert install.set_ini_value(before, "python", "enable_x", "true") == expected


def test_unknown_editor_is_an_error(capsys):
    assert install.install_plugin("photoshop", dry_run=True, target=None) == 2
    assert "unknown editor" in capsys.readouterr().err


def test_the_bridge_looks_where_install_json_told_the_daemon_to_write(home, tmp_path, monkeypatch):
    """An install made with MATTEKIT_CONFIG_DIR / MATTEKIT_RUNTIME_DIR set records them for the daemon it
    starts; the editor's process does not have them, so the plug-in must read them from install.json too."""
    monkeypatch.setenv("MATTEKIT_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("MATTEKIT_RUNTIME_DIR", str(tmp_path / "rt"))
    target = tmp_path / "plug-ins"
    assert install.install_plugin("gimp", dry_run=False, target=str(target)) == 0
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "token").write_text("the-token\n")
    code = (
        f"import sys; sys.path.insert(0, {str(target / 'mattekit')!r})\n"
        "from mattekit_bridge import editor_client\n"
        "c = editor_client.EditorClient(retries=0, connect_timeout=0.5)\n"
        "print(c.endpoint, c.token)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATTEKIT_") and k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [f"ipc://{tmp_path / 'rt' / 'daemon.sock'}", "the-token"]
