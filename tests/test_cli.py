"""The command line and the Python API as a rembg user drives them (#20): real CLI, real daemon, real files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from mattekit import cli
from mattekit.catalog import Catalog
from mattekit.engine import Engine
from synth import soft_disc

SRC = str(Path(__file__).resolve().parents[1] / "backend")


def _photo(path: Path, h: int = 60, w: int = 80, seed: int = 0) -> tuple[Path, Path]:
    """A soft disc photo and its rough lasso (the disc dilated 4 px) as 8-bit PNGs -> (photo, mask)."""
    image, alpha, _ = soft_disc(h, w, min(h, w) / 3, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), (image[..., ::-1] * 255 + 0.5).astype(np.uint8))
    mask = cv2.dilate((alpha > 0.5).astype(np.uint8) * 255, np.ones((9, 9), np.uint8))
    mask_path = path.with_name(path.stem + ".mask.png")
    cv2.imwrite(str(mask_path), mask)
    return path, mask_path


@pytest.fixture
def at_daemon(daemon, monkeypatch):
    """The CLI pointed at a real classical daemon (refine and decontaminate need no model)."""
    d, _ = daemon
    monkeypatch.setenv("MATTEKIT_ENDPOINT", d.endpoint)
    return d


def _no_daemon(monkeypatch, tmp_path) -> Path:
    """An endpoint nobody serves and whose auto-start would leave a log: proof that nothing connected."""
    monkeypatch.setenv("MATTEKIT_ENDPOINT", f"ipc://{tmp_path}/none/d.sock")
    return Path(os.environ["MATTEKIT_RUNTIME_DIR"]) / "daemon.log"


@pytest.mark.parametrize(("output", "extra", "says"), [
    ("x.jpg", [], ".jpg cannot hold the cut-out's transparency"),
    ("name", [], "has no extension"),
    ("x.gif", [], "cannot write .gif"),
    ("afile/x.png", [], "is a file, so no folder can be made inside it"),
    ("-", ["--output", "both"], "cannot go to standard output"),
])
def test_an_output_that_cannot_hold_the_result_is_refused_before_any_job(mk_env, monkeypatch, tmp_path, capsys, output, extra, says):
    log = _no_daemon(monkeypatch, tmp_path)
    photo, mask = _photo(tmp_path / "p.png")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "folder").mkdir()
    rc = cli.main(["refine", str(photo), "--guidance", str(mask), "-o", output if output == "-" else str(tmp_path / output), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and says in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not log.exists()  # refused before any daemon was asked (or started)


@pytest.mark.parametrize(("args", "says"), [
    (["--band", "0"], "--band must be 1..1024"),
    (["--decontaminate", "1.5"], "--decontaminate must be between 0 and 1"),
    (["--feather", "9"], "--feather: 'feather' must be"),
    (["--shift-edge=-900px"], "--shift-edge: 'shift_edge' must be"),
    (["--smooth", "2 inches"], "--smooth: 'smooth' must be"),
    (["--contrast", "150"], "--contrast must be a number 0..100"),
])
def test_a_bad_flag_is_named_in_the_error(mk_env, monkeypatch, tmp_path, capsys, args, says):
    _no_daemon(monkeypatch, tmp_path)
    photo, mask = _photo(tmp_path / "p.png")
    assert cli.main(["refine", str(photo), "--guidance", str(mask), "-o", str(tmp_path / "o.png"), *args]) == 2
    assert says in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: usage and exit 2
        cli.main(["--timeout", "0", "status"])


@pytest.mark.parametrize(("make", "says"), [
    (lambda p: p.write_bytes(Path(p.parent / "good.jpg").read_bytes()[:600]), "truncated JPEG"),
    (lambda p: p.write_bytes(b"not an image at all"), "not an image this program can read"),
    (lambda p: None, "does not exist"),
])
def test_a_bad_input_is_one_line_naming_it(at_daemon, tmp_path, capsys, make, says):
    image, _, _ = soft_disc(40, 50, 12)
    cv2.imwrite(str(tmp_path / "good.jpg"), (image * 255).astype(np.uint8))
    bad = tmp_path / "bad.jpg"
    make(bad)
    rc = cli.main(["decontaminate", str(bad), "--alpha", str(tmp_path / "good.jpg"), "-o", str(tmp_path / "o.png")])
    err = capsys.readouterr().err.strip()
    assert rc in (1, 2) and says in err and str(bad) in err and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


def test_a_folder_is_processed_recursively_keeping_its_structure_and_skipping_done_files(at_daemon, tmp_path, capsys):
    photos = tmp_path / "in"
    masks = tmp_path / "masks"
    for rel, seed in (("a.png", 0), ("sub/b.png", 1)):
        p, m = _photo(photos / rel, seed=seed)
        (masks / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(m, masks / rel)
    (photos / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    args = ["refine", str(photos), "--guidance", str(masks), "-o", str(out), "--output", "both", "--jobs", "2"]
    (masks / "sub" / "broken.png").write_bytes((masks / "a.png").read_bytes())
    rc = cli.main(args)
    err = capsys.readouterr().err
    assert rc == 1 and "2 of 3 done, 1 failed" in err and "broken.png" in err  # one bad file never stops the rest
    for rel in ("a", "sub/b"):
        cut = cv2.imread(str(out / f"{rel}.png"), cv2.IMREAD_UNCHANGED)
        alpha = cv2.imread(str(out / f"{rel}_alpha.png"), cv2.IMREAD_UNCHANGED)
        assert cut.shape == (60, 80, 4) and alpha.shape == (60, 80) and 0.1 < (alpha > 127).mean() < 0.6
    made = (out / "a.png").stat().st_mtime_ns
    time.sleep(0.01)
    os.remove(photos / "sub" / "broken.png")
    assert cli.main(args) == 0
    assert "2 up to date" in capsys.readouterr().err and (out / "a.png").stat().st_mtime_ns == made
    assert cli.main([*args, "--overwrite"]) == 0 and (out / "a.png").stat().st_mtime_ns > made


def test_standard_input_to_standard_output(at_daemon, tmp_path):
    image, alpha, _ = soft_disc(48, 64, 16)
    rgba = np.dstack([image, alpha]).astype(np.float32)
    png = cv2.imencode(".png", (rgba[..., [2, 1, 0, 3]] * 255 + 0.5).astype(np.uint8))[1].tobytes()
    env = {**os.environ, "PYTHONPATH": SRC}
    run = subprocess.run([sys.executable, "-m", "mattekit", "decontaminate", "-", "-o", "-"], input=png, capture_output=True,
                         env=env, timeout=120)
    assert run.returncode == 0, run.stderr.decode()
    out = cv2.imdecode(np.frombuffer(run.stdout, np.uint8), cv2.IMREAD_UNCHANGED)
    assert out.shape == (48, 64, 4)
    np.testing.assert_array_equal(out[..., 3], (alpha * 255 + 0.5).astype(np.uint8))  # the input's own alpha was the matte


def test_a_cutout_on_a_background_colour_can_be_a_jpeg(at_daemon, tmp_path):
    photo, mask = _photo(tmp_path / "p.png")
    assert cli.main(["refine", str(photo), "--guidance", str(mask), "-o", str(tmp_path / "o.jpg"), "--background", "#00ff00"]) == 0
    out = cv2.imread(str(tmp_path / "o.jpg"))[..., ::-1].astype(int)
    assert (np.abs(out[0, 0] - [0, 255, 0]) < 8).all()  # the corner is background: the colour
    assert out[30, 40, 1] < 200  # the subject is not


def test_exif_orientation_is_applied_and_the_icc_profile_kept(at_daemon, tmp_path):
    image, alpha, _ = soft_disc(40, 70, 12)  # stored landscape, shown portrait (orientation 6: rotate 90 cw)
    im = Image.fromarray((image * 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im.save(tmp_path / "phone.png", exif=exif.tobytes(), icc_profile=srgb)
    mask = np.rot90((alpha > 0.3).astype(np.uint8) * 255, -1)  # drawn on the upright picture
    cv2.imwrite(str(tmp_path / "m.png"), np.ascontiguousarray(mask))
    assert cli.main(["refine", str(tmp_path / "phone.png"), "--guidance", str(tmp_path / "m.png"), "-o", str(tmp_path / "o.png")]) == 0
    with Image.open(tmp_path / "o.png") as out:
        assert out.size == (40, 70) and out.mode == "RGBA"  # upright: 40 wide, 70 high
        assert out.info.get("icc_profile") == srgb


def test_a_png_s_orientation_and_profile_are_read_from_its_chunks_without_decoding_it_twice(tmp_path, monkeypatch):
    """eXIf may follow the pixel data (Pillow then decodes the whole image to find it: seconds at 40 MP);
    the chunks are walked instead, and the 16-bit pixels come through OpenCV alone."""
    import struct
    import zlib

    from mattekit import files

    pixels = np.random.default_rng(0).integers(0, 65536, (30, 50, 3), dtype=np.uint16)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    png = files.encode(pixels, ".png", icc=srgb)
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 ccw to show upright
    body = exif.tobytes()
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body) & 0xFFFFFFFF)
    iend = png.rindex(b"IEND") - 4
    (tmp_path / "late_exif.png").write_bytes(png[:iend] + chunk + png[iend:])  # after IDAT, before IEND

    def no_decode(self, *args, **kwargs):
        raise AssertionError("Pillow decoded the pixels")

    monkeypatch.setattr(Image.Image, "load", no_decode)
    pic = files.read_picture(tmp_path / "late_exif.png")
    assert pic.icc == srgb
    np.testing.assert_array_equal(pic.pixels, np.rot90(pixels))  # orientation 8, 16 bits kept
    (tmp_path / "broken.png").write_bytes(png[:iend] + struct.pack(">I", 4) + b"eXIf" + b"junk" + b"\0" * 4 + png[iend:])
    np.testing.assert_array_equal(files.read_picture(tmp_path / "broken.png").pixels, pixels)  # unreadable EXIF: as stored


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("channels", [3, 4])
def test_red_and_blue_swap_at_every_depth_a_file_can_have(dtype, channels):
    from mattekit.files import swap_red_blue

    rgba = (np.random.default_rng(1).random((9, 13, channels)) * 250).astype(dtype)
    view = rgba[:, ::2]  # not contiguous
    out = swap_red_blue(view)
    expected = view[..., [2, 1, 0, 3][:channels]]
    assert out.dtype == dtype and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(swap_red_blue(out), view)


def test_global_options_work_after_the_subcommand(daemon, mk_env, tmp_path, monkeypatch):
    d, _ = daemon
    monkeypatch.setenv("MATTEKIT_ENDPOINT", f"ipc://{tmp_path}/wrong.sock")
    photo, mask = _photo(tmp_path / "p.png")
    assert cli.main(["refine", str(photo), "--guidance", str(mask), "-o", str(tmp_path / "o.png"), "--endpoint", d.endpoint]) == 0
    assert (tmp_path / "o.png").exists()


def test_a_daemon_that_cannot_start_says_why_at_once(mk_env, tmp_path, monkeypatch, capsys):
    lax = tmp_path / "lax"
    lax.mkdir(mode=0o755)
    os.chmod(lax, 0o755)
    monkeypatch.setenv("MATTEKIT_ENDPOINT", f"ipc://{lax}/d.sock")
    monkeypatch.setenv("PYTHONPATH", SRC)
    photo, mask = _photo(tmp_path / "p.png")
    t0 = time.monotonic()
    rc = cli.main(["refine", str(photo), "--guidance", str(mask), "-o", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert rc == 1 and "could not start" in err and "chmod 700" in err
    assert time.monotonic() - t0 < 30  # not the minute of "no socket file" it used to be


def test_interrupt_and_a_bad_checkpoint_are_one_line(mk_env, monkeypatch, capsys):
    from mattekit import batch

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "run_jobs", interrupted)
    assert cli.main(["select", "x.png", "-o", "y.png"]) == 130
    assert capsys.readouterr().err.strip() == "mattekit select: interrupted"
    assert cli.main(["models", "import", "modnet", "/nonexistent.ckpt"]) == 1
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and len(err.splitlines()) == 1


def test_the_python_api_gives_the_daemons_answer_in_process_and_through_it(at_daemon):
    import mattekit

    image, alpha, _ = soft_disc(60, 80, 20)
    rough = (alpha > 0.5).astype(np.float32)
    local = mattekit.refine_selection(image, rough, backend="local")
    remote = mattekit.refine_selection(image, rough, backend="daemon")
    assert local.shape == (60, 80) and local.dtype == np.float32
    np.testing.assert_allclose(local, remote, atol=1e-6)
    assert ((local > 0) & (local < 1)).any() and ((local > 0.5) == (alpha > 0.5)).mean() > 0.95  # a soft matte of the disc
    pil = Image.fromarray((image * 255).astype(np.uint8))
    out = mattekit.decontaminate(pil, Image.fromarray((alpha * 255).astype(np.uint8)), backend="local")
    assert isinstance(out, Image.Image) and out.mode == "RGBA" and out.size == (80, 60)


def test_the_python_api_warns_of_an_empty_selection(monkeypatch):
    import mattekit
    from mattekit import api

    class Flat:
        def predict(self, image, **kw):
            return np.zeros(image.shape[:2], np.float32)

    engine = Engine(learned=True)
    monkeypatch.setattr(Engine, "catalog", lambda self: Catalog({"trimap_free": ["flat"], "guided": ["classical"], "foreground": ["classical"]}))
    engine._runtimes["flat@auto"] = Flat()
    monkeypatch.setattr(api, "_ENGINE", engine)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        alpha = mattekit.select_subject(np.full((30, 40, 3), 100, np.uint8), backend="local")
    assert alpha.max() == 0 and any("no subject was found" in str(w.message) for w in seen)


def test_watch_processes_photos_as_they_arrive(at_daemon, tmp_path):
    watched, out = tmp_path / "in", tmp_path / "out"
    watched.mkdir()

    def drop(name: str, seed: int) -> None:
        image, alpha, _ = soft_disc(40, 50, 14, seed=seed)
        rgba = np.dstack([image, alpha])[..., [2, 1, 0, 3]]
        cv2.imwrite(str(watched / f".{name}"), (rgba * 255 + 0.5).astype(np.uint8))
        os.replace(watched / f".{name}", watched / name)  # appears whole, as a finished copy does

    def wait_for(path: Path) -> bool:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if path.exists():
                return True
            time.sleep(0.1)
        return False

    drop("a.png", 0)
    proc = subprocess.Popen([sys.executable, "-m", "mattekit", "decontaminate", str(watched), "-o", str(out), "--watch"],
                            env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_for(out / "a.png")
        drop("b.png", 1)
        assert wait_for(out / "b.png")
    finally:
        proc.terminate()
        proc.wait(10)
    assert cv2.imread(str(out / "b.png"), cv2.IMREAD_UNCHANGED).shape == (40, 50, 4)


def test_globs_a_folder_output_and_both_outputs_are_said(at_daemon, tmp_path, capsys):
    for i in range(2):
        image, alpha, _ = soft_disc(30, 40, 10, seed=i)
        rgba = np.dstack([image, alpha])[..., [2, 1, 0, 3]]
        cv2.imwrite(str(tmp_path / f"shot{i}.png"), (rgba * 255 + 0.5).astype(np.uint8))
    assert cli.main(["decontaminate", str(tmp_path / "shot*.png"), "-o", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["shot0.png", "shot1.png"]
    assert cli.main(["decontaminate", str(tmp_path / "shot0.png"), "-o", str(tmp_path / "x.png"), "--output", "alpha"]) == 2
    assert "makes only the cut-out" in capsys.readouterr().err
    photo, mask = _photo(tmp_path / "p.png")
    assert cli.main(["refine", str(photo), "--guidance", str(mask), "-o", str(tmp_path / "one") + "/", "--output", "both"]) == 0
    err = capsys.readouterr().err
    assert (tmp_path / "one" / "p.png").exists() and (tmp_path / "one" / "p_alpha.png").exists()
    assert "p.png and" in err and "p_alpha.png" in err  # the second file is said, not silent


def test_status_is_readable_and_a_closed_pipe_is_not_a_traceback(at_daemon, capsys):
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    assert "idle" in out and "guided: classical" in out and "{" not in out
    proc = subprocess.Popen([sys.executable, "-m", "mattekit", "models", "list"], env={**os.environ, "PYTHONPATH": SRC},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written (`mattekit models list | head -0`)
    err = proc.stderr.read().decode()
    assert proc.wait(60) != 0 and "Traceback" not in err


def test_edge_flags_reach_the_daemon_and_change_the_matte(at_daemon, tmp_path, capsys):
    photo, mask = _photo(tmp_path / "p.png", h=80, w=100)
    outs = {}
    for name, flags in {"plain": [], "grown": ["--shift-edge", "4px"], "shrunk": ["--shift-edge=-5%"],
                        "soft": ["--feather", "2", "--contrast", "0"]}.items():
        out = tmp_path / f"{name}.png"
        assert cli.main(["refine", str(photo), "--guidance", str(mask), "-o", str(out), "--output", "alpha", *flags]) == 0, capsys.readouterr().err
        outs[name] = np.asarray(Image.open(out), np.float32) / 255

    def radius(a):
        return np.sqrt((a >= 0.5).sum() / np.pi)

    assert radius(outs["grown"]) - radius(outs["plain"]) == pytest.approx(4, abs=1)
    assert radius(outs["plain"]) - radius(outs["shrunk"]) == pytest.approx(4, abs=1)  # 5 % of the 80 px short side
    soft, plain = outs["soft"], outs["plain"]
    assert ((soft > 0.02) & (soft < 0.98)).sum() > ((plain > 0.02) & (plain < 0.98)).sum()


def test_the_python_api_passes_the_edge_controls_in_process_and_through_the_daemon(at_daemon):
    import mattekit

    image, alpha, _ = soft_disc(60, 80, 20)
    rough = (alpha > 0.5).astype(np.float32)
    plain = mattekit.refine_selection(image, rough, backend="local")
    local = mattekit.refine_selection(image, rough, backend="local", shift_edge="3px", contrast=50)
    remote = mattekit.refine_selection(image, rough, backend="daemon", shift_edge="3px", contrast=50)
    np.testing.assert_allclose(local, remote, atol=1e-6)
    assert (local >= 0.5).sum() > (plain >= 0.5).sum()


def test_refine_with_a_box_finds_the_object_and_bad_boxes_are_exit_2(at_daemon, tmp_path, capsys):
    """`--box X,Y,W,H` is a rectangle selection: the disc inside it comes back, not the rectangle."""
    image, alpha, _ = soft_disc(120, 160, 30, seed=3)
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), (image[..., ::-1] * 255 + 0.5).astype(np.uint8))
    ys, xs = np.nonzero(alpha > 0.5)
    box = f"{xs.min() - 8},{ys.min() - 8},{xs.max() - xs.min() + 17},{ys.max() - ys.min() + 17}"
    out = tmp_path / "o.png"
    assert cli.main(["refine", str(photo), "--box", box, "-o", str(out), "--output", "alpha"]) == 0, capsys.readouterr().err
    got = cv2.imread(str(out), cv2.IMREAD_UNCHANGED).astype(np.float32) / 255
    truth, found = alpha > 0.5, got > 0.5
    assert (truth & found).sum() / (truth | found).sum() > 0.9  # the box itself scores ~0.7
    capsys.readouterr()
    for args, says in [(["--box", "1,2,3"], "give X,Y,WIDTH,HEIGHT"),
                       (["--box", "0,0,0,10"], "has no area"),
                       (["--box", "100,100,200,50"], "outside the 160x120 image"),
                       (["--box", box, "--guidance", str(photo)], "give one"),
                       ([], "--guidance MASK or --box")]:
        rc = cli.main(["refine", str(photo), *args, "-o", str(tmp_path / "bad.png")])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and says in err and "Traceback" not in err, (args, rc, err)
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.parametrize("command", ["refine", "select"])
def test_a_guidance_of_another_size_is_exit_2_naming_it(at_daemon, tmp_path, capsys, command):
    photo, mask = _photo(tmp_path / "p.png")
    cv2.imwrite(str(mask), np.zeros((30, 30), np.uint8))
    assert cli.main([command, str(photo), "--guidance", str(mask), "-o", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert str(mask) in err and "30x30" in err


def test_the_python_api_takes_a_box_and_refuses_two_or_no_selections():
    import mattekit

    image, alpha, _ = soft_disc(120, 160, 30, seed=3)
    ys, xs = np.nonzero(alpha > 0.5)
    box = (int(xs.min()) - 8, int(ys.min()) - 8, int(xs.max() - xs.min()) + 17, int(ys.max() - ys.min()) + 17)
    got = mattekit.refine_selection(image, box=box, backend="local") > 0.5
    truth = alpha > 0.5
    assert (truth & got).sum() / (truth | got).sum() > 0.9
    for kwargs, says in [({}, "needs one selection"), ({"guidance": alpha, "box": box}, "needs one selection"),
                         ({"box": (1.5, 2, 3, 4)}, "four integers"), ({"box": (1, 2, 3)}, "four integers")]:
        with pytest.raises(ValueError, match=says):
            mattekit.refine_selection(image, backend="local", **kwargs)
