"""The job commands of the CLI (`mattekit select|refine|decontaminate`) over one file, standard input,
many files, folders (recursive, structure kept) or a watched folder.

Everything that can be checked is checked before the first job: the inputs exist, every output can
be written and can hold what was asked (a cut-out's transparency needs PNG or TIFF). Each file is
then read, sent to the daemon and written on its own; one that fails is reported in one line and
the rest go on; a summary and the exit code say whether any failed.

Exit codes: 0 all written; 1 a job or a file failed; 2 the command line, an input or an output is
wrong (nothing was done); 3 an empty selection (the file is written; --allow-empty makes it 0);
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import config
from . import protocol as P
from .files import (ALPHA_EXTENSIONS, READ_EXTENSIONS, STDIO, WRITE_EXTENSIONS, ImageFileError, check_folder, check_output,
                    over_background, parse_colour, read_mask, read_picture, write_picture)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_EMPTY, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: How often --watch looks for new files, seconds.
WATCH_INTERVAL_S = 1.0


class UsageError(Exception):
    """A wrong flag or path found before any work; str() is the one line to print."""


@dataclass
class Task:
    """One input and where its results go."""

    source: str  # a path or "-"
    output: str  # the main output: a path or "-"
    alpha_output: str | None = None  # --output both: the mask beside the cut-out
    guidance: str | None = None  # refine: the rough selection; decontaminate: the alpha (None: the image's own)


@dataclass
class Outcome:
    written: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, one-line reason)
    empty: list[str] = field(default_factory=list)
    skipped: int = 0
    ran: str = ""  # the last job's model and time
    misused: bool = False  # a failure was the command line's (a --box outside the image, a mask of another size)


# --------------------------------------------------------------------------- planning (no work yet)


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in READ_EXTENSIONS and not p.name.startswith("."))


def _expand(sources: list[str]) -> list[tuple[str, Path | None, str]]:
    """Inputs -> (path, the folder it was found in or None, its path relative to that folder)."""
    import glob

    out: list[tuple[str, Path | None, str]] = []
    for s in sources:
        if s == STDIO:
            out.append((s, None, "stdin"))
            continue
        p = Path(s)
        if p.is_dir():
            found = _images_under(p)
            if not found:
                raise UsageError(f"{s}: no images in this folder ({', '.join(READ_EXTENSIONS)})")
            out += [(str(f), p, str(f.relative_to(p))) for f in found]
        elif p.exists():
            out.append((s, None, p.name))
        elif any(c in s for c in "*?["):
            matches = sorted(glob.glob(s, recursive=True))
            if not matches:
                raise UsageError(f"{s}: no file matches")
            out += [(m, None, Path(m).name) for m in matches]
        else:
            raise UsageError(f"{s} does not exist")
    return out


def _transparent(args: argparse.Namespace) -> bool:
    return args.output != "alpha" and args.background is None


def _alpha_name(path: Path) -> Path:
    return path.with_name(path.stem + "_alpha.png")


def plan(args: argparse.Namespace) -> list[Task]:
    """The tasks for the command line, every output checked. Raises UsageError or ImageFileError."""
    inputs = _expand(args.inputs)
    out = args.output_path
    many = len(inputs) > 1 or any(folder is not None for _, folder, _ in inputs)
    to_folder = many or (out is not None and out != STDIO and (Path(out).is_dir() or out.endswith(("/", "\\"))))
    if sum(src == STDIO for src, _, _ in inputs) and many:
        raise UsageError("- (standard input) can only be the one input")
    if out is None:
        raise UsageError("-o is required: an output file, a folder (for several inputs) or - for standard output")
    if to_folder and out == STDIO:
        raise UsageError("-o -: several results cannot all go to standard output; give a folder")
    if to_folder and Path(out).suffix.lower() in WRITE_EXTENSIONS and not Path(out).is_dir():
        raise UsageError(f"-o {out}: {len(inputs)} inputs need an output folder, not a file name")
    ext = "." + args.format.lstrip(".")
    if _transparent(args) and ext not in ALPHA_EXTENSIONS:
        raise UsageError(f"--format {args.format} cannot hold the cut-out's transparency; use png or tif, or give --background")
    if args.sheet and many:
        raise UsageError(f"--sheet {args.sheet}: a contact sheet is for one input, not {len(inputs)}")
    side = getattr(args, "guidance", None) or getattr(args, "alpha", None)
    side_flag = "--guidance" if getattr(args, "guidance", None) else "--alpha"
    tasks = []
    checked: set[Path] = set()  # each output folder is made and probed once, not once per file
    for src, folder, rel in inputs:
        if to_folder:
            target = Path(out) / Path(rel).with_suffix(ext)
            if args.output == "both":
                target = target.with_suffix(".png") if _transparent(args) else target
            output = str(target)
            if target.parent not in checked:
                check_folder(target.parent, flag=f"-o {out}")
                checked.add(target.parent)
        else:
            output = out
            check_output(out, transparent=_transparent(args))
        guide = None
        if side is not None:
            sp = Path(side)
            if sp.is_dir():  # the same relative path (any image extension) under the side folder
                base = sp / Path(rel)
                found = [c for c in (base, *(base.with_suffix(e) for e in READ_EXTENSIONS)) if c.is_file()]
                if not found:
                    raise UsageError(f"{side_flag} {side}: no mask for {rel} ({base.with_suffix('.png')})")
                guide = str(found[0])
            elif many:
                raise UsageError(f"{side_flag} {side}: several inputs need a folder of masks named like them")
            elif not sp.is_file():
                raise UsageError(f"{side_flag} {side} does not exist")
            else:
                guide = side
        alpha_out = None
        if args.output == "both":
            if output == STDIO:
                raise UsageError("--output both writes two files; it cannot go to standard output")
            alpha_out = str(_alpha_name(Path(output)))
        tasks.append(Task(src, output, alpha_out, guide))
    outputs = Counter([t.output for t in tasks] + [t.alpha_output for t in tasks if t.alpha_output])
    clash = {o for o, n in outputs.items() if n > 1 and o != STDIO}
    if clash:
        raise UsageError(f"two inputs would write {sorted(clash)[0]}; give them different names or folders")
    return tasks


def _up_to_date(task: Task) -> bool:
    """Batch: a result newer than its input (and its mask) is not made again (--overwrite makes it)."""
    try:
        made = Path(task.output).stat().st_mtime
        newest = max(Path(p).stat().st_mtime for p in (task.source, task.guidance) if p)
    except OSError:
        return False
    return made >= newest and (task.alpha_output is None or Path(task.alpha_output).exists())


# --------------------------------------------------------------------------- one task


def params_from_args(args: argparse.Namespace, op: str) -> dict[str, Any]:
    """Job parameters, each checked here so that an error names the flag, not a protocol key."""
    if op == "decontaminate" and args.output != "cutout":
        raise UsageError(f"--output {args.output}: decontaminate takes the matte as input and makes only the cut-out")
    outputs = {"alpha": ["alpha"], "cutout": ["foreground"], "both": ["alpha", "foreground"]}[args.output]
    params: dict[str, Any] = {"outputs": outputs}
    if op != "decontaminate":
        params["model"] = args.model
    amount = args.amount if op == "decontaminate" else args.decontaminate
    if amount is not None:
        if not 0.0 <= amount <= 1.0:
            raise UsageError(f"--{'amount' if op == 'decontaminate' else 'decontaminate'} must be between 0 and 1, got {amount:g}")
        params["amount"] = amount
    params.update(edge_params_from_args(args))
    box = getattr(args, "box", None)
    if box is not None:
        try:
            params["box"] = [int(v) for v in box.split(",")]
        except ValueError:
            params["box"] = None
        if params["box"] is None or len(params["box"]) != 4:
            raise UsageError(f"--box {box}: give X,Y,WIDTH,HEIGHT in pixels, e.g. --box 120,80,640,480")
        if getattr(args, "guidance", None):
            raise UsageError("--box and --guidance are two selections: give one")
    elif op == "refine" and not args.guidance:
        raise UsageError("refine needs the rough selection: --guidance MASK or --box X,Y,WIDTH,HEIGHT")
    if op == "refine" and args.band is not None:
        if not 1 <= args.band <= P.BAND_MAX_PX:
            raise UsageError(f"--band must be 1..{P.BAND_MAX_PX} pixels (leave it out for the automatic width), got {args.band}")
        params["band_px"] = args.band
    return params


#: The edge controls' flags and their job parameters (mattekit.edges applies them in the daemon).
EDGE_FLAGS = {"smooth": "--smooth", "feather": "--feather", "contrast": "--contrast", "shift_edge": "--shift-edge"}


def edge_params_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """--smooth/--feather/--shift-edge (N or N% of the image's short side, or Npx) and --contrast (0..100)
    as job parameters; only those given, each checked so that an error names its flag."""
    params: dict[str, Any] = {}
    for key, flag in EDGE_FLAGS.items():
        text = getattr(args, key, None)
        if text is None:
            continue
        try:
            value: Any = float(text)
        except ValueError:
            value = text  # "1.5%" or "12px": the protocol's own forms
        try:
            P.parse_contrast(value) if key == "contrast" else P.parse_edge_size(key, value)
        except P.ProtocolError as exc:
            if key == "contrast":  # the flag's own words: the CLI user never sees a parameter name
                raise UsageError(f"{flag} must be a number 0..100 (percent), got {text}") from None
            raise UsageError(f"{flag}: {exc.message}") from None
        params[key] = value
    return params


def _background(args: argparse.Namespace) -> Any:
    if args.background is None:
        return None
    colour = parse_colour(args.background)
    if colour is not None:
        return colour
    if not Path(args.background).is_file():
        raise UsageError(f"--background {args.background}: not a colour (#rrggbb, r,g,b, white, black, grey, green, blue) "
                         "and not an image file")
    return read_picture(args.background).pixels


def run_task(task: Task, op: str, params: dict[str, Any], client_factory: Callable[[], Any], args: argparse.Namespace,
             background: Any, progress: Callable | None = None) -> tuple[list[str], list[str], bool, str]:
    """Read, run and write one task -> (files written, the daemon's warnings, whether the selection is
    empty, what ran). Raises ImageFileError / MatteError."""
    picture = read_picture(task.source)
    image, icc = picture.pixels, picture.icc
    del picture  # the RGBA file's pixels are freed once split into the photo and its alpha below
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    shape = image.shape[:2]
    inputs: dict[str, Any] = {}
    guidance = None
    if params.get("box") is not None:
        from .rough import check_box

        try:
            check_box(shape, tuple(params["box"]))
        except ValueError as exc:
            raise UsageError(f"{task.source}: --{exc}") from None
    if op in ("refine", "select_subject") and task.guidance is not None:  # else --box, a job parameter
        try:
            guidance = read_mask(task.guidance, shape)
        except ImageFileError as exc:
            raise UsageError(str(exc)) from None
        inputs["guidance"] = (guidance, "Y", "srgb")
    elif op == "decontaminate":
        if task.guidance is not None:
            guidance = read_mask(task.guidance, shape)
        elif image.shape[2] == 4:
            guidance = np.ascontiguousarray(image[..., 3])
        else:
            raise UsageError(f"{task.source} has no alpha channel: give the matte with --alpha")
        inputs["alpha"] = (guidance, "Y", "srgb")
    if image.shape[2] == 4:  # the layer's own transparency is not part of the photo to matte
        image = np.ascontiguousarray(image[..., :3])
    inputs = {"image": (image, None, "srgb"), **inputs}
    with client_factory() as client:
        result = client.run_job(op, inputs, params, progress=progress)
    del inputs  # the photo is kept only for a contact sheet: encoding a 40 MP result needs the memory
    if not getattr(args, "sheet", None):
        image = None
    written = []
    fg = result.foreground
    if fg is not None:
        main = fg if background is None else over_background(fg, background)
        write_picture(task.output, main, icc)
        written.append(task.output)
    if result.alpha is not None:
        target = task.alpha_output or task.output
        write_picture(target, result.alpha[..., 0] if result.alpha.ndim == 3 else result.alpha, None)
        written.append(target)
    if getattr(args, "sheet", None):
        from .contact import matting_sheet

        alpha = result.alpha if result.alpha is not None else fg[..., 3]
        matting_sheet(args.sheet, image, alpha, guidance=guidance, foreground=fg)
        written.append(args.sheet)
    empty = result.header.get("coverage", 1.0) < config.SUBJECT_EMPTY_FRACTION
    seconds = (result.header.get("timings") or {}).get("total_s", 0.0)
    return written, list(result.header.get("warnings", [])), empty, f"model {result.model or 'classical'}, {seconds:.2f} s in the daemon"


# --------------------------------------------------------------------------- the command


def _bar(total: int, desc: str):
    from tqdm import tqdm

    # disable=None: a bar on a terminal, silence in logs (no carriage-return spam).
    return tqdm(total=total, desc=desc, file=sys.stderr, disable=None, unit="file" if total > 1 else "%",
                bar_format=None if total > 1 else "{desc}: {percentage:3.0f}%|{bar}| {postfix}")


def run_jobs(args: argparse.Namespace, client_factory: Callable[[], Any]) -> int:
    """The job command: plan, then run each task; returns the exit code (see the module docstring)."""
    op = args.op
    try:
        params = params_from_args(args, op)
        background = _background(args)
        tasks = plan(args)
    except (UsageError, ImageFileError) as exc:
        print(f"mattekit {args.cmd}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.watch:
        return _watch(args, op, params, background, client_factory)
    return _run_all(tasks, args, op, params, background, client_factory)


def _run_all(tasks: list[Task], args: argparse.Namespace, op: str, params: dict[str, Any], background: Any,
             client_factory: Callable[[], Any], quiet_skips: bool = False) -> int:
    from .client import MatteError

    single = len(tasks) == 1 and not args.watch
    outcome = Outcome()
    todo = [t for t in tasks if single or args.overwrite or not _up_to_date(t)]
    outcome.skipped = len(tasks) - len(todo)
    if outcome.skipped and not quiet_skips:
        print(f"mattekit {args.cmd}: {outcome.skipped} up to date (newer than their inputs; --overwrite makes them again)",
              file=sys.stderr)
    if not todo:
        return EXIT_OK
    bar = _bar(100 if single else len(todo), args.cmd)
    lock = threading.Lock()

    def job_progress(stage: str, fraction: float, header: dict) -> None:
        bar.n = int(round(fraction * 100))
        bar.set_postfix_str(stage + (f" ({header['model']})" if header.get("model") else ""))
        bar.refresh()

    def one(task: Task) -> None:
        try:
            written, warnings, empty, ran = run_task(task, op, params, client_factory, args, background, job_progress if single else None)
        except UsageError as exc:
            reason = str(exc)  # names its file already
            outcome.misused = True
        except ImageFileError as exc:
            reason = str(exc)
        except MatteError as exc:
            reason = f"{task.source}: {exc.message} [{exc.code}]"
        else:
            reason = None
        with lock:
            if reason is not None:
                outcome.failed.append((task.source, reason))
                bar.write(f"mattekit {args.cmd}: {reason}", file=sys.stderr)
            else:
                outcome.written += written
                outcome.ran = ran
                if empty:
                    outcome.empty.append(task.source)
                for w in warnings:
                    bar.write(f"mattekit {args.cmd}: warning: {w}" + ("" if single else f" ({task.source})"), file=sys.stderr)
            if not single:
                bar.update(1)

    try:
        if args.jobs > 1 and not single:  # reading and writing files overlap the daemon's work
            with ThreadPoolExecutor(args.jobs) as pool:
                list(pool.map(one, todo))
        else:
            for t in todo:
                one(t)
    finally:
        if single:
            bar.n = 100
        bar.close()
    if single and not outcome.failed:
        print(f"{args.cmd}: {outcome.ran} → {' and '.join(outcome.written)}", file=sys.stderr)
    elif not single:
        print(f"mattekit {args.cmd}: {len(todo) - len(outcome.failed)} of {len(todo)} done, {len(outcome.failed)} failed"
              + (f", {len(outcome.empty)} empty" if outcome.empty else "") + f" -> {args.output_path}", file=sys.stderr)
        for _, reason in outcome.failed:
            print(f"  failed: {reason}", file=sys.stderr)
    if outcome.failed:
        return EXIT_USAGE if single and outcome.misused else EXIT_FAILED
    if outcome.empty and not args.allow_empty:
        return EXIT_EMPTY
    return EXIT_OK


def _watch(args: argparse.Namespace, op: str, params: dict[str, Any], background: Any, client_factory: Callable[[], Any]) -> int:
    """Process the folder's images as they appear (and again when changed), until interrupted."""
    folders = [s for s in args.inputs if Path(s).is_dir()]
    if len(folders) != len(args.inputs):
        print(f"mattekit {args.cmd}: --watch needs folders as inputs", file=sys.stderr)
        return EXIT_USAGE
    print(f"mattekit {args.cmd}: watching {', '.join(folders)} (Ctrl-C to stop)", file=sys.stderr)
    status = EXIT_OK
    tried: dict[str, float] = {}  # source -> its mtime when last tried: a failed file is retried once it changes
    while True:
        try:
            tasks = plan(args)
        except UsageError:  # the folder is empty for now
            tasks = []
        fresh = []
        for t in tasks:
            mtime = Path(t.source).stat().st_mtime if Path(t.source).exists() else 0.0
            if not _up_to_date(t) and tried.get(t.source) != mtime:
                fresh.append(t)
                tried[t.source] = mtime  # forgotten below when it worked
        if fresh:
            status = max(status, _run_all(fresh, args, op, params, background, client_factory, quiet_skips=True))
            for t in fresh:
                if _up_to_date(t):
                    tried.pop(t.source, None)
        time.sleep(WATCH_INTERVAL_S)


def add_job_commands(sub: Any, common: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int]) -> None:
    """The select / refine / decontaminate subcommands, run by `func` (the CLI's, which owns the client)."""
    models = "auto, general (any subject), portrait (people first), classical (refine), or an installed weights name (mattekit models list)"

    def job(name: str, op: str, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text, parents=[common])
        sp.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (searched recursively), globs, or - for standard input")
        sp.add_argument("-o", dest="output_path", default=None, metavar="OUTPUT",
                        help="output file (.png/.tif keep transparency and 16 bits), a folder for several inputs, or - for standard output (PNG)")
        sp.add_argument("--output", choices=["alpha", "cutout", "both"], default="cutout",
                        help="cutout: RGBA with the matte as transparency (default); alpha: the matte as a grey image; both: the cut-out and NAME_alpha.png")
        sp.add_argument("--background", default=None, metavar="COLOUR|IMAGE",
                        help="put the cut-out on this colour (#rrggbb, r,g,b, white, ...) or image (resized to cover); then JPEG works too")
        sp.add_argument("--format", default="png", choices=["png", "tif", "jpg", "webp"], help="extension of outputs written into a folder (default png)")
        sp.add_argument("--jobs", type=int, default=1, help="files in flight at once (reading and writing overlap the daemon's work)")
        sp.add_argument("--overwrite", action="store_true", help="also redo results that are newer than their inputs")
        sp.add_argument("--watch", action="store_true", help="keep watching the input folders and process new or changed images")
        sp.add_argument("--allow-empty", action="store_true", help="exit 0 even when no subject was found")
        sp.add_argument("--sheet", default=None, help="also write a contact sheet PNG (input, guidance, alpha, cut-out); one input only")
        sp.set_defaults(op=op)
        return sp

    c = job("select", "select_subject", "select the subject with no guidance (like Photoshop's Select Subject, or rembg)")
    r = job("refine", "refine", "refine a rough selection into a soft matte")
    r.add_argument("--guidance", default=None, help="rough selection mask (a loose lasso is fine; grey image, or a trimap 0/128/255); a folder of masks for several inputs")
    c.add_argument("--guidance", default=None, help="a selection mask: the subject inside it (grey image); a folder of masks for several inputs")
    r.add_argument("--band", type=int, default=None, help=f"unknown band width in pixels, 1..{P.BAND_MAX_PX} (default: scales with the image)")
    for sp in (c, r):
        sp.add_argument("--box", default=None, metavar="X,Y,W,H",
                        help="a rectangle selection in pixels: the object inside it (instead of --guidance)")
        sp.add_argument("--model", default="auto", help=models)
        sp.add_argument("--decontaminate", type=float, default=None, metavar="AMOUNT",
                        help="remove the old background's colour from edges, 0..1 (default %g)" % config.DECONTAMINATE_AMOUNT)
    d = job("decontaminate", "decontaminate", "remove the old background's colour from the edge pixels of a cut-out")
    size = (f"N or N%% (of the image's short side, up to {P.EDGE_MAX_PERCENT:g}) or Npx (up to {P.EDGE_MAX_PX:g}); "
            "default 0 (off)")
    for sp in (c, r, d):
        edge = sp.add_argument_group("edge controls (Select and Mask's; applied to the matte in this order, all off by default)")
        edge.add_argument("--smooth", default=None, metavar="SIZE", help=f"smooth a jagged edge: radius, {size}")
        edge.add_argument("--feather", default=None, metavar="SIZE", help=f"soften the edge: Gaussian blur sigma, {size}")
        edge.add_argument("--contrast", default=None, metavar="PERCENT", help="harden the soft transition, 0..100 (100: a hard edge)")
        edge.add_argument("--shift-edge", dest="shift_edge", default=None, metavar="SIZE",
                          help=f"move the edge out (+) or in (-, written --shift-edge=-N) by this distance, {size.replace('up to ', 'up to +-')}")
    d.add_argument("--alpha", default=None, help="the matte (grey image, or a folder of them); default: the input's own alpha channel")
    d.add_argument("--amount", type=float, default=None, help="0 keeps the colours, 1 removes all of the old background (default %g)" % config.DECONTAMINATE_AMOUNT)
    for sp in (c, r, d):
        sp.set_defaults(func=func)


__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_EMPTY", "EXIT_INTERRUPTED", "Task", "UsageError",
           "add_job_commands", "plan", "params_from_args", "run_jobs", "run_task"]
