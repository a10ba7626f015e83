"""What a sandboxed plug-in does, run by tests/test_sandbox.py inside bubblewrap (or with an
AppImage-like environment): import the vendored bridge from the installed plug-in folder (argv[1]),
then Select Subject on a synthetic photo through the daemon. Prints one JSON line.

Standard library only, like the plug-ins: argv[2] "no-pyzmq" hides pyzmq, as Krita's Python lacks it;
argv[3] "autostart" lets the bridge start the daemon itself when it does not answer."""

import json
import sys

folder, mode, start = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "no-pyzmq":
    sys.modules["zmq"] = None  # `import zmq` now fails, as in Krita's AppImage Python
sys.path.insert(0, folder)

from mattekit_bridge import editor_client as ec  # noqa: E402
from mattekit_bridge import protocol as P  # noqa: E402

w, h = 96, 64
pixels = bytearray()
for y in range(h):
    for x in range(w):
        inside = (x - 48) ** 2 + (y - 32) ** 2 < 20 ** 2
        pixels += bytes((220, 60, 40) if inside else (30, 90 + y, 200))


def select_subject() -> dict:
    c = ec.EditorClient(connect_timeout=5, retries=0)
    try:
        header, buffers = c.run_job("select_subject", [(P.BufferSpec("image", w, h, "u8", "RGB", "srgb"), bytes(pixels))],
                                    {"outputs": ["alpha"]})
        alpha = bytes(buffers["alpha"][1])
        return {"transport": c.transport_name, "ok": True, "model": header.get("model"),
                "inside": alpha[32 * w + 48], "outside": alpha[2 * w + 2], "n": len(alpha)}
    finally:
        c.close()


out = {"sandbox": ec.sandbox_name()}
try:
    try:
        out.update(select_subject())
    except ec.EditorError as exc:
        # What both plug-ins do when the daemon does not answer: (ask, then) start it and try again.
        if exc.code != P.E_UNAVAILABLE or start != "autostart" or not ec.start_daemon(wait_s=120):
            raise
        out.update(select_subject())
except ec.EditorError as exc:
    out.update(ok=False, code=exc.code, message=exc.message, transport="pyzmq" if ec.pyzmq_available() else "zmtp")
print(json.dumps(out))
