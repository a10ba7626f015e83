"""Build and cache a Debian 13 (trixie) root holding a real GIMP 3 / Krita for editor tests.

The root is made once with mmdebstrap and cached as ``~/.cache/mattekit/<key>.tar.zst``
where ``key`` hashes the suite and the package list, so changing either builds a new one.
Each test session extracts it into a temporary directory (seconds) and runs the editor
there with ``chroot``. Everything here needs root; ``unavailable_reason()`` says why a
machine cannot do it, so tests skip with a precise message instead of failing obscurely.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

SUITE = "trixie"
GIMP_PACKAGES = ("gimp", "python3-gi", "gir1.2-gimp-3.0", "python3-numpy", "python3-zmq")
CACHE_DIR = Path(os.environ.get("MATTEKIT_ROOTS_CACHE", str(Path.home() / ".cache" / "mattekit")))


def cache_key(packages: tuple[str, ...], suite: str = SUITE) -> str:
    """A file-name-safe key that changes with the suite or the package set."""
    digest = hashlib.sha256((suite + "\n" + "\n".join(sorted(packages))).encode()).hexdigest()[:16]
    return f"root-{suite}-{digest}"


def debian_mirror() -> str:
    """The Debian mirror already configured for apt on this host (deb822 or one-line)."""
    d = Path("/etc/apt/sources.list.d")
    files = sorted(d.glob("*.sources")) + sorted(d.glob("*.list")) + [Path("/etc/apt/sources.list")]
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        for m in re.finditer(r"^URIs:\s*(\S+)", text, re.M):
            if "security" not in m.group(1):
                return m.group(1)
        for m in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M):
            if "security" not in m.group(1):
                return m.group(1)
    return "http://deb.debian.org/debian"


def unavailable_reason() -> str | None:
    """None when this machine can build and chroot into a root; otherwise why not."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "editor roots need Linux"
    if os.geteuid() != 0:
        return "editor roots need root (chroot, mmdebstrap)"
    if shutil.which("chroot") is None:
        return "chroot is not installed"
    return None


def _ensure_host_tools() -> None:
    missing = [p for p, exe in (("mmdebstrap", "mmdebstrap"), ("zstd", "zstd")) if shutil.which(exe) is None]
    if missing:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=900", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=900", "install", "-y", "-q", *missing], check=True, env=env, stdout=subprocess.DEVNULL)


def build_root_tarball(packages: tuple[str, ...] = GIMP_PACKAGES, suite: str = SUITE) -> Path:
    """The cached root tarball for ``packages``, built with mmdebstrap when missing (~2 min)."""
    out = CACHE_DIR / f"{cache_key(packages, suite)}.tar.zst"
    if out.exists():
        return out
    _ensure_host_tools()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part.tar.zst")
    cmd = [
        "mmdebstrap", "--variant=apt", "--include=" + ",".join(packages),
        "--aptopt=APT::Install-Recommends \"false\"", suite, str(tmp), debian_mirror(),
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    tmp.rename(out)  # atomic: a killed build never leaves a half tarball under the final name
    return out


def extract_root(tarball: Path, dest: Path | None = None) -> Path:
    """Unpack a root tarball into ``dest`` (a new temp dir by default) and return it."""
    dest = Path(dest or tempfile.mkdtemp(prefix="mattekit-root-"))
    subprocess.run(["tar", "-C", str(dest), "--zstd", "-xf", str(tarball)], check=True)
    (dest / "root").mkdir(exist_ok=True)
    return dest


def chroot_run(root: Path, script: str, *, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a shell command line inside ``root`` (with /proc and /dev/shm available) as root.

    The outer ``timeout`` guards against editors that wait forever; callers should also
    put ``timeout`` inside the command line so the editor itself is killed in the root.
    """
    for sub in ("proc", "dev", "tmp", "dev/shm"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    mounted = []
    try:
        if not os.path.ismount(root / "proc"):
            subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
            mounted.append(root / "proc")
        base = {"HOME": "/root", "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}
        base.update(env or {})
        return subprocess.run(
            ["chroot", str(root), "/bin/sh", "-c", script], env=base, capture_output=True, text=True, timeout=timeout
        )
    finally:
        for m in reversed(mounted):
            subprocess.run(["umount", "-l", str(m)], check=False)


def remove_root(root: Path) -> None:
    """Delete an extracted root, refusing to follow a still-mounted /proc into the host."""
    if os.path.ismount(root / "proc"):
        subprocess.run(["umount", "-l", str(root / "proc")], check=False)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":  # python tests/editors/roots.py: build the cache ahead of a test run
    print(build_root_tarball())
