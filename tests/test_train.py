"""mattekit-train: recipes, schedules, smoke runs per method, exact resume, torchrun (gloo), export."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from mattekit_training.train import RECIPES_DIR, deep_merge, load_recipe, lr_lambda, main, run

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["modnet", "modnet_soc", "prn", "fgnet", "gfm", "pomagan", "ddc"]


def _tiny(name: str, **over) -> dict:
    return deep_merge(load_recipe(RECIPES_DIR / f"{name}_tiny.toml"), over)


# ---------------------------------------------------------------- recipes and schedules


@pytest.mark.parametrize("name", METHODS)
def test_full_recipes_are_complete(name):
    r = load_recipe(RECIPES_DIR / f"{name}.toml")
    assert r["method"] == name
    for section in ("model", "data", "optim", "schedule", "train"):
        assert section in r, section
    assert "train" in r["data"] and "val" in r["data"] and r["data"]["batch_size"] > 0
    assert r["train"]["iterations"] > 1000


def test_extends_merges_tables_and_replaces_other_data_kinds():
    soc = load_recipe(RECIPES_DIR / "modnet_soc.toml")
    assert soc["data"]["train"]["kind"] == "mix" and "rssn" not in soc["data"]["train"]
    assert soc["data"]["val"]["kind"] == "composite"  # inherited from modnet.toml
    assert soc["optim"]["name"] == "adam" and soc["optim"]["lr"] == 1e-4


def test_lr_schedules():
    cos = lr_lambda({"name": "cosine", "warmup": 10}, 110)
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0)
    assert cos(60) == pytest.approx(0.5, abs=1e-6) and cos(110) == pytest.approx(0.0, abs=1e-9)
    step = lr_lambda({"name": "step", "milestones": [0.6, 0.9], "gammas": [0.1, 0.05]}, 100)
    assert [step(s) for s in (0, 59, 60, 89, 90)] == [1.0, 1.0, 0.1, 0.1, 0.05]
    every = lr_lambda({"name": "step", "milestones": [10, 20], "gamma": 0.1}, 40)
    assert every(25) == pytest.approx(0.01)
    assert lr_lambda({"name": "constant"}, 5)(3) == 1.0


# ---------------------------------------------------------------- smoke runs


@pytest.mark.parametrize("name", METHODS)
def test_smoke_run_lowers_training_loss(name, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = run(_tiny(name), tmp_path, device="cpu", quiet=True)
    losses = [h["total"] for h in tr.history]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5, losses
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert any(rec.get("step") == 30 and "total" in rec for rec in log)
    assert any(k.startswith("val_") for k in tr.last_metrics)
    assert (tmp_path / "last.pt").is_file()
    assert list((tmp_path / "sheets").glob("val_*.png"))


def test_pomagan_says_once_that_perceptual_is_off(tmp_path):
    with pytest.warns(RuntimeWarning, match="perceptual loss is OFF"):
        run(_tiny("pomagan", train={"iterations": 2}), tmp_path, device="cpu", quiet=True)
    msgs = [json.loads(line).get("msg", "") for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert sum("perceptual loss is OFF" in m for m in msgs) == 1


def test_soc_keeps_frozen_copy_and_batchnorm_statistics(tmp_path):
    tr = run(_tiny("modnet_soc", train={"iterations": 3}), tmp_path, device="cpu", quiet=True)
    m, frozen = tr.method.model, tr.method.frozen
    bn = [mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    fbn = [mod for mod in frozen.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    assert bn and all(torch.equal(a.running_mean, b.running_mean) for a, b in zip(bn, fbn))
    changed = any(not torch.equal(a, b) for a, b in zip(m.parameters(), frozen.parameters()))
    assert changed  # the model moved, the frozen copy did not


def test_prn_gt_stage_masks_with_trimap_unknown(tmp_path):
    tr = run(_tiny("prn", train={"iterations": 1}, loss={"gt_until": 100, "mixed_until": 200}), tmp_path,
             device="cpu", quiet=True)
    assert tr.history[0]["self_guidance"] == 0.0
    tr = run(_tiny("prn", train={"iterations": 1}), tmp_path / "self", device="cpu", quiet=True)
    assert tr.history[0]["self_guidance"] == 1.0


# ---------------------------------------------------------------- resume


def test_resume_gives_the_same_next_losses(tmp_path):
    rec = _tiny("prn", train={"iterations": 8, "eval_every": 1000})
    full = run(rec, tmp_path / "full", device="cpu", quiet=True)
    part = run(rec, tmp_path / "part", device="cpu", quiet=True, max_steps=5)
    assert part.step == 5
    rest = run(rec, tmp_path / "part", device="cpu", quiet=True, resume=tmp_path / "part" / "last.pt")
    assert rest.step == 8
    a = [h["total"] for h in full.history[5:]]
    b = [h["total"] for h in rest.history]
    assert b == pytest.approx(a, rel=1e-5, abs=1e-6)


# ---------------------------------------------------------------- DDP


@pytest.mark.slow
def test_torchrun_two_cpu_processes_gloo(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "backend"), str(ROOT / "training")]),
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mattekit_training.train", str(RECIPES_DIR / "modnet_tiny.toml"), "--out", str(tmp_path),
           "--max-steps", "3", "--device", "cpu", "--quiet"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "total" in r][-1] == 3
    ck = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=False)
    # 8 items over 2 ranks at batch 2: one epoch is 2 steps, so step 3 is batch 1 of epoch 1
    assert ck["data"] == {"epoch": 1, "consumed": 2}


# ---------------------------------------------------------------- CLI and export


def test_cli_trains_and_exports(tmp_path, capsys):
    from mattekit.models.checkpoints import load_weights, read_registry, sha256_file

    recipe = tmp_path / "r.toml"
    recipe.write_text(f'extends = "{RECIPES_DIR / "gfm_tiny.toml"}"\nname = "gfm_smoke"\n'
                      "[train]\niterations = 2\nexport = true\n")
    assert main([str(recipe), "--out", str(tmp_path / "out"), "--device", "cpu", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["step"] == 2
    exp = tmp_path / "out" / "export"
    entry = read_registry(exp)["gfm_smoke"]
    assert entry["sha256"] == sha256_file(exp / "gfm_smoke.safetensors")
    assert json.loads(entry["recipe"])["method"] == "gfm"
    assert entry["data"] == ["composite:synthetic+bg:procedural"]
    assert "val_sad" in entry["metrics"]
    assert (exp / "gfm_smoke.onnx").is_file()
    model = load_weights(exp / "gfm_smoke.safetensors")
    assert model.config.backbone == "mobilenetv2"


@pytest.mark.parametrize("model", [
    {"name": "prn", "config": {"encoder": "mobilenetv2", "width": 0.25, "decoder_layers": [1, 1, 1, 1]}},
    {"name": "gfm", "config": {"backbone": "mobilenetv2", "light_width": 32}},
])
def test_ddc_trains_any_alpha_model(model, tmp_path):
    rec = _tiny("ddc", train={"iterations": 2})
    rec["model"] = model
    tr = run(rec, tmp_path, device="cpu", quiet=True)
    assert all(torch.isfinite(torch.tensor(h["total"])) for h in tr.history)
    assert tr.history[0]["ddc"] > 0


def test_ema_weights_are_evaluated_and_lag_the_model(tmp_path):
    tr = run(_tiny("modnet", train={"iterations": 3, "ema": 0.9}), tmp_path, device="cpu", quiet=True)
    ema, model = tr.ema.model.state_dict(), tr.method.model.state_dict()
    diffs = [not torch.equal(ema[k], model[k]) for k in model if model[k].is_floating_point()]
    assert any(diffs)
    ck = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=False)
    assert ck["ema"] is not None


@pytest.mark.kit("pets", "coco128", "feral-cats")
def test_the_u2netp_subject_recipe_trains_on_whole_real_frames(tmp_path):
    """ship_subject_u2netp.toml, shrunk: whole Pets / COCO / cat frames squashed to one square (as the
    model sees a photo), known-region L1 + DDC on U²-Net-p's fused output; the loss falls."""
    from mattekit_training.torchdata import build_dataset

    small = {"crop": 64}
    recipe = load_recipe(RECIPES_DIR / "ship_subject_u2netp.toml")
    parts = [{**p, **small} for p in recipe["data"]["train"]["parts"]]
    item = build_dataset(parts[0], seed=0)[0]
    assert item["image"].shape == (3, 64, 64) and set(item["trimap"].unique().tolist()) <= {0.0, 0.5, 1.0}
    recipe = deep_merge(recipe, {
        "model": {"init": ""}, "data": {"batch_size": 2, "train": {"parts": parts}, "val": {**small, "length": 2}},
        "optim": {"lr": 1e-3}, "train": {"iterations": 30, "eval_every": 30, "ckpt_every": 30, "export": False}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = run(recipe, tmp_path, device="cpu", quiet=True)
    losses = [h["total"] for h in tr.history]
    assert len(losses) == 30 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5, losses
