"""Editors in a Flatpak sandbox: how their plug-in reaches the daemon on the host.

Inside Flatpak GIMP (``org.gimp.GIMP``, how most Linux users get GIMP 3) or Flatpak Krita,
``/tmp``, ``$XDG_RUNTIME_DIR`` and ``$XDG_CONFIG_HOME`` are the app's own: the daemon's socket
and token on the host cannot be seen. One folder is the same path inside and out: the app's
``~/.var/app/<id>``. So the host daemon binds a second ipc socket there and keeps a copy of its
token beside the app's config, and the plug-in's ``install.json`` names both
(``mattekit install-plugin gimp --flatpak`` sets this up).

Why not loopback TCP: a socket file needs no network permission in the sandbox (Flatpak may
unshare the network), cannot collide with another program's port, and is guarded like the main
socket by file modes (0700 folder, 0600 socket) rather than by the token alone.

Host side only (the daemon and the installer); the plug-in's side is ``editor_client``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from . import config

#: The Flatpak application id of each editor.
FLATPAK_APPS = {"gimp": "org.gimp.GIMP", "krita": "org.kde.krita"}
#: Where each editor's Flatpak keeps its plug-ins, inside the app's folder.
FLATPAK_PLUGIN_DIRS = {"gimp": Path("config", "GIMP", "3.0", "plug-ins"), "krita": Path("data", "krita", "pykrita")}
#: Linux's limit on an ipc socket's path (sun_path is 108 bytes with its NUL).
MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class Sandbox:
    """One sandboxed app the daemon also serves: its socket and the copy of the token it reads."""

    app: str
    endpoint: str
    token_file: Path

    def to_json(self) -> dict[str, str]:
        return {"app": self.app, "endpoint": self.endpoint, "token_file": str(self.token_file)}


def flatpak_root(app: str) -> Path:
    """``~/.var/app/<app>``: the same path on the host and inside the app's sandbox."""
    return Path.home() / ".var" / "app" / app


def flatpak_sandbox(editor: str) -> Sandbox:
    """Where the daemon meets ``editor``'s Flatpak: a socket in its cache, the token in its config
    (where the sandbox's own ``$XDG_CONFIG_HOME/mattekit/token`` points, too)."""
    app = FLATPAK_APPS[editor]
    root = flatpak_root(app)
    socket = root / "cache" / "mattekit" / "daemon.sock"
    if len(str(socket)) > MAX_SOCKET_PATH:
        raise ValueError(f"{socket} is longer than the {MAX_SOCKET_PATH} bytes an ipc socket's path may have")
    return Sandbox(app, f"ipc://{socket}", root / "config" / "mattekit" / "token")


def registry_path() -> Path:
    """The host's list of sandboxes its daemon serves (written by ``install-plugin --flatpak``)."""
    return config.config_dir() / "sandboxes.json"


def registered() -> list[Sandbox]:
    """The sandboxes ``mattekit serve`` also serves; [] when none were installed (or the file is unreadable)."""
    try:
        entries = json.loads(registry_path().read_text())
        return [Sandbox(str(e["app"]), str(e["endpoint"]), Path(e["token_file"])) for e in entries]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def register(sandbox: Sandbox) -> None:
    """Add (or update, by app) ``sandbox`` in the host's list."""
    others = [s for s in registered() if s.app != sandbox.app]
    path = registry_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_private(path, json.dumps([s.to_json() for s in [*others, sandbox]], indent=2) + "\n")


def write_token(sandbox: Sandbox, token: str) -> None:
    """The daemon's token where the sandboxed plug-in reads it: 0600 in a 0700 folder, replaced
    atomically (a plug-in never reads half a token), rewritten at every daemon start so it
    follows the host's token."""
    folder = sandbox.token_file.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    _write_private(sandbox.token_file, token)


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
