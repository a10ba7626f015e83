"""Where the daemon bridge comes from: the vendored copy, or the mattekit package in a checkout.

``mattekit install-plugin krita`` puts ``mattekit_bridge/`` (protocol, config, zmtp,
editor_client, editor_core; standard library only) inside this package. Running from a source
checkout with ``backend/`` on the path works too.
"""

from __future__ import annotations

try:
    from .mattekit_bridge import editor_client, editor_core, protocol  # installed layout
except ImportError:  # pragma: no cover - depends on the layout
    from mattekit import editor_client, editor_core, protocol  # type: ignore[no-redef]

EditorClient = editor_client.EditorClient
EditorError = editor_client.EditorError
start_daemon = editor_client.start_daemon
daemon_command = editor_client.daemon_command
sandbox_name = editor_client.sandbox_name
warnings_text = editor_client.warnings_text
BufferSpec = protocol.BufferSpec

__all__ = ["BufferSpec", "EditorClient", "EditorError", "daemon_command", "editor_client", "editor_core", "protocol", "sandbox_name",
           "start_daemon", "warnings_text"]
