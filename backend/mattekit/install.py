"""`mattekit install-plugin gimp|krita`: copy a plug-in and its bridge into the editor.

Each plug-in gets a vendored ``mattekit_bridge/`` package (``protocol.py``,
``config.py``, ``zmtp.py``, ``editor_client.py``, ``editor_core.py``, all standard
library only) and an
``install.json`` saying how to start this very daemon, so the plug-in works in an
editor whose Python has neither mattekit nor NumPy nor pyzmq.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

from . import __version__
from .sandbox import FLATPAK_APPS, FLATPAK_PLUGIN_DIRS, Sandbox, flatpak_root, flatpak_sandbox, register, registry_path, write_token

#: The modules a plug-in needs to talk to the daemon, and the rules both plug-ins share (stdlib-only by design).
BRIDGE_MODULES = ("protocol.py", "config.py", "zmtp.py", "editor_client.py", "editor_core.py")
BRIDGE_DIR = "mattekit_bridge"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*")


def plugins_source() -> Path:
    """Where the plug-in sources are: the source tree, or the installed data files."""
    here = Path(__file__).resolve().parent
    candidates = [
        here.parents[1] / "plugins",  # running from a checkout: backend/mattekit → plugins/
        here / "plugins",  # shipped inside the package
        Path(sysconfig.get_paths()["data"]) / "share" / "mattekit" / "plugins",  # data_files
    ]
    for c in candidates:
        if (c / "gimp").is_dir() or (c / "krita").is_dir():
            return c
    raise FileNotFoundError("cannot find the plug-in sources (looked in " + ", ".join(map(str, candidates)) + ")")


def gimp_plugins_dir() -> Path:
    """GIMP 3's per-user plug-ins folder on this platform."""
    if os.environ.get("GIMP3_DIRECTORY"):
        return Path(os.environ["GIMP3_DIRECTORY"]) / "plug-ins"
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "GIMP" / "3.0" / "plug-ins"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "GIMP" / "3.0" / "plug-ins"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "GIMP" / "3.0" / "plug-ins"


def krita_pykrita_dir() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "krita" / "pykrita"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "krita" / "pykrita"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "krita" / "pykrita"


def kritarc_path() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "kritarc"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Preferences" / "kritarc"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kritarc"


def daemon_launch_info() -> dict[str, Any]:
    """How a plug-in starts this daemon: the `mattekit` executable, else this Python with -m."""
    exe = shutil.which("mattekit")
    info: dict[str, Any] = {"version": __version__, "endpoint": os.environ.get("MATTEKIT_ENDPOINT") or None, "env": {}}
    if exe:
        info["command"] = [str(Path(exe).resolve())]
    else:  # not pip-installed: run the package from where it lies
        info["command"] = [str(Path(sys.executable).absolute()), "-m", "mattekit"]
        info["env"]["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    for key in ("MATTEKIT_RUNTIME_DIR", "MATTEKIT_CONFIG_DIR", "MATTEKIT_DATA_DIR"):
        if os.environ.get(key):
            info["env"][key] = os.environ[key]
    return info


def set_ini_value(text: str, section: str, key: str, value: str) -> str:
    """Set ``key=value`` in ``[section]`` of an INI text, keeping everything else as it is."""
    lines = text.splitlines()
    header = f"[{section}]"
    start = next((i for i, l in enumerate(lines) if l.strip() == header), None)
    if start is None:
        if lines and lines[-1].strip():
            lines.append("")
        lines += [header, f"{key}={value}"]
        return "\n".join(lines) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("[")), len(lines))
    for i in range(start + 1, end):
        if lines[i].split("=", 1)[0].strip() == key:
            lines[i] = f"{key}={value}"
            break
    else:
        # after the section's last non-blank line, so a blank separator stays before the next section
        at = end
        while at > start + 1 and not lines[at - 1].strip():
            at -= 1
        lines.insert(at, f"{key}={value}")
    return "\n".join(lines) + "\n"


def _copy_bridge(dest: Path, sandbox: Sandbox | None = None) -> None:
    here = Path(__file__).resolve().parent
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in BRIDGE_MODULES:
        shutil.copy2(here / name, dest / name)
    (dest / "__init__.py").write_text(f'"""mattekit {__version__} bridge, vendored by `mattekit install-plugin`: do not edit."""\n')
    info = daemon_launch_info()
    if sandbox is not None:  # the sandbox's own socket and token copy; never started from inside
        info.update(endpoint=sandbox.endpoint, token_file=str(sandbox.token_file), sandbox=f"flatpak:{sandbox.app}")
    (dest / "install.json").write_text(json.dumps(info, indent=2) + "\n")


def _plan(editor: str, target: str | None, flatpak: bool = False) -> list[tuple[str, Path, Path | None]]:
    """(what, destination, source) steps; source None = generated content."""
    src = plugins_source()
    if flatpak and editor in FLATPAK_APPS:
        app_root = flatpak_root(FLATPAK_APPS[editor])
        if target is None:
            target = str(app_root / FLATPAK_PLUGIN_DIRS[editor])
        steps = _plan(editor, target)
        return [(what, app_root / "config" / "kritarc" if what == "kritarc" else dest, source) for what, dest, source in steps] + [
            ("sandbox", registry_path(), None)]
    if editor == "gimp":
        root = Path(target) if target else gimp_plugins_dir()
        folder = root / "mattekit"
        return [("plug-in", folder, src / "gimp" / "mattekit"), ("bridge", folder / BRIDGE_DIR, None)]
    if editor == "krita":
        root = Path(target) if target else krita_pykrita_dir()
        pkg = root / "mattekit_krita"
        return [
            ("plug-in", pkg, src / "krita" / "mattekit_krita"),
            ("desktop", root / "mattekit_krita.desktop", src / "krita" / "mattekit_krita.desktop"),
            ("bridge", pkg / BRIDGE_DIR, None),
            ("kritarc", kritarc_path(), None),
        ]
    raise ValueError(f"unknown editor {editor!r}: use gimp or krita")


def install_plugin(editor: str, *, dry_run: bool = False, target: str | None = None, flatpak: bool = False) -> int:
    """Install the plug-in for ``editor`` ("gimp" or "krita"); returns a process exit code.

    flatpak: into the editor's Flatpak (``~/.var/app/<id>``), reaching the host's daemon through
    ``mattekit.sandbox`` (a socket and a token copy in the app's folder, registered for `serve`)."""
    try:
        steps = _plan(editor, target, flatpak)
        sandbox = flatpak_sandbox(editor) if flatpak else None
    except (ValueError, FileNotFoundError) as exc:
        print(f"mattekit install-plugin: {exc}", file=sys.stderr)
        return 2
    for what, dest, source in steps:
        if source is not None and not source.exists():
            print(f"mattekit install-plugin: {source} is missing from this mattekit installation", file=sys.stderr)
            return 2
    for what, dest, source in steps:
        if what == "kritarc":
            print(f"{'would set' if dry_run else 'set'} [python] enable_mattekit_krita=true in {dest}")
        elif what == "bridge":
            print(f"{'would copy' if dry_run else 'copy'} bridge ({', '.join(BRIDGE_MODULES)}, install.json) → {dest}")
        elif what == "sandbox":
            print(f"{'would register' if dry_run else 'register'} the sandbox's socket {sandbox.endpoint} and token copy "
                  f"{sandbox.token_file} in {dest}")
        else:
            print(f"{'would copy' if dry_run else 'copy'} {source} → {dest}")
        if dry_run:
            continue
        if what == "plug-in":
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(source, dest, ignore=_IGNORE)
        elif what == "desktop":
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
        elif what == "bridge":
            _copy_bridge(dest, sandbox)
        elif what == "sandbox":
            from .daemon import load_token

            register(sandbox)
            write_token(sandbox, load_token())  # the daemon rewrites it at each start
        elif what == "kritarc":
            dest.parent.mkdir(parents=True, exist_ok=True)
            old = dest.read_text() if dest.exists() else ""
            dest.write_text(set_ini_value(old, "python", "enable_mattekit_krita", "true"))
    if editor == "gimp" and not dry_run:
        main = steps[0][1] / "mattekit.py"
        main.chmod(main.stat().st_mode | 0o755)  # GIMP runs only executable plug-ins
    name = "GIMP" if editor == "gimp" else "Krita"
    if not dry_run and sandbox is not None:
        print(f"Installed the {editor} plug-in into Flatpak {name} ({sandbox.app}). A sandboxed {name} cannot start the daemon: "
              f"run `mattekit serve` on the host (after `mattekit stop`, if one is running, so that it serves the sandbox too), "
              f"then restart {name}.")
    elif not dry_run:
        print(f"Installed the {editor} plug-in. Restart {name}, and start the daemon with `mattekit serve`.")
    return 0
