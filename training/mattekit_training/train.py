"""`mattekit-train RECIPE.toml`: train one of the seed methods from a TOML recipe.

    mattekit-train recipes/prn.toml --out runs/prn [--resume CKPT] [--max-steps N] [--device cpu|cuda]
    torchrun --nproc_per_node 4 -m mattekit_training.train recipes/prn.toml --out runs/prn

A recipe (see `recipes/*.toml`) has: `method` (modnet, modnet_soc, prn, fgnet, gfm, pomagan,
ddc), `[model]` (registry name + config overrides), `[data]` (train / val `build_dataset`
specs, batch size, workers), `[loss]` (terms and weights), `[optim]`, `[schedule]` and
`[train]` (iterations, eval / checkpoint cadence, AMP, clipping, EMA, seed). `extends =
"other.toml"` deep-merges this file over another one (the `*_tiny.toml` smoke variants).

The same recipe runs on one CPU process, one GPU, or N processes under torchrun
(DistributedDataParallel; gloo on CPU, nccl on CUDA; every rank sees its own shard of each
epoch through a DistributedSampler). Rank 0 writes `log.jsonl`, checkpoints, contact sheets
and the exported weights.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, DistributedSampler

from .recipe import RECIPES_DIR, deep_merge, load_recipe  # noqa: E402,F401 - re-exported: recipes have their own module


# --------------------------------------------------------------------------- schedules


def lr_lambda(cfg: dict, iterations: int) -> Callable[[int], float]:
    """Multiplier on the base lr at a step. [schedule] name:
    - "constant" (GFM's fixed lr), optional `warmup`;
    - "cosine": linear warm-up over `warmup` steps then cosine to `min_factor` (MG);
    - "step": x `gamma` at each of `milestones` (iterations, or fractions of the run when < 1;
      `gammas` gives one factor per milestone, e.g. DDC's 0.1 then 0.05 of the base lr).
    """
    name = cfg.get("name", "constant")
    warmup = int(cfg.get("warmup", 0))
    min_factor = float(cfg.get("min_factor", 0.0))
    ms = [int(m * iterations) if 0 < m < 1 else int(m) for m in cfg.get("milestones", [])]
    gammas = list(cfg.get("gammas", [cfg.get("gamma", 0.1)] * len(ms)))

    def fn(step: int) -> float:
        w = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        if name == "constant":
            return w
        if name == "cosine":
            if step < warmup:
                return w
            t = min(1.0, (step - warmup) / max(1, iterations - warmup))
            return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * t))
        if name == "step":
            f = 1.0
            for m, g in zip(ms, gammas):
                if step >= m:
                    f = g if "gammas" in cfg else f * g
            return w * f
        raise ValueError(f"unknown schedule {name!r}")

    return fn


def build_optimizer(cfg: dict, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """[optim] name sgd / adam / adamw with lr, momentum, betas, weight_decay."""
    name = cfg.get("name", "adam").lower()
    lr = float(cfg.get("lr", 1e-4))
    wd = float(cfg.get("weight_decay", 0.0))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(cfg.get("momentum", 0.9)), weight_decay=wd)
    betas = tuple(cfg.get("betas", (0.9, 0.999)))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=float(cfg.get("weight_decay", 0.01)))
    raise ValueError(f"unknown optimiser {name!r}")


# --------------------------------------------------------------------------- data


class ResumableSampler(DistributedSampler):
    """DistributedSampler (works with 1 replica too) that can start mid-epoch: `start`
    skips that many of this rank's samples (the data position stored in checkpoints)."""

    def __init__(self, dataset, num_replicas: int, rank: int, seed: int, shuffle: bool = True):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start


class BatchStream:
    """Endless batches over epochs with an exact position (epoch, samples consumed)."""

    def __init__(self, dataset, batch_size: int, workers: int, rank: int, world: int, seed: int, device,
                 fixed_items: bool = False):
        self.dataset, self.batch_size, self.workers, self.device = dataset, batch_size, workers, device
        self.fixed_items = fixed_items  # keep the items of epoch 0 (smoke runs overfit a tiny set)
        self.sampler = ResumableSampler(dataset, world, rank, seed)
        if self.sampler.num_samples < batch_size:
            raise ValueError(f"dataset of {len(dataset)} items is too small for batch {batch_size} x {world} ranks")
        self.epoch, self.consumed = 0, 0
        self._it: Iterator | None = None

    def state(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state(self, s: dict) -> None:
        self.epoch, self.consumed, self._it = int(s["epoch"]), int(s["consumed"]), None

    def _start(self) -> None:
        if hasattr(self.dataset, "set_epoch") and not self.fixed_items:
            self.dataset.set_epoch(self.epoch)
        self.sampler.set_epoch(self.epoch)
        self.sampler.start = self.consumed
        loader = DataLoader(self.dataset, batch_size=self.batch_size, sampler=self.sampler, drop_last=True,
                            num_workers=self.workers, pin_memory=self.device.type == "cuda",
                            worker_init_fn=_worker_init if self.workers else None)
        self._it = iter(loader)

    def next(self) -> dict:
        for _ in range(2):
            if self._it is None:
                self._start()
            try:
                batch = next(self._it)
                self.consumed += self.batch_size
                return batch
            except StopIteration:
                self.epoch, self.consumed, self._it = self.epoch + 1, 0, None
        raise RuntimeError("data loader yields no batches")


def _worker_init(worker_id: int) -> None:
    from .torchdata import worker_init_fn

    worker_init_fn(worker_id)


def to_device(batch: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


# --------------------------------------------------------------------------- EMA, RNG


class EMA:
    """Exponential moving average of a model's floating state (weights and BN statistics)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        src = model.state_dict()
        for k, v in self.model.state_dict().items():
            s = src[k].detach()
            if v.is_floating_point():
                v.mul_(self.decay).add_(s.to(v.dtype), alpha=1 - self.decay)
            else:
                v.copy_(s)


def rng_state() -> dict:
    s = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- trainer


class Trainer:
    """Runs a recipe: builds method, optimisers, data; loops; evaluates; checkpoints; exports."""

    def __init__(self, recipe: dict, out_dir: str | Path, device: str | None = None, max_steps: int | None = None,
                 quiet: bool = False):
        self.recipe = recipe
        self.out = Path(out_dir)
        self.tcfg: dict[str, Any] = dict(recipe.get("train", {}))
        self.iterations = int(self.tcfg.get("iterations", 1000))
        self.max_steps = max_steps
        self.quiet = quiet
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dev == "cuda":
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = torch.device(dev)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.is_main = self.rank == 0
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.seed = int(self.tcfg.get("seed", 0))
        seed_all(self.seed + self.rank)
        self._log_file = None

        from .trainers import METHODS

        method = recipe.get("method")
        if method not in METHODS:
            raise ValueError(f"recipe method {method!r}; known: {', '.join(sorted(METHODS))}")
        self.method = METHODS[method](recipe, self.device, self.say)
        if self.world > 1:
            for name, mod in self.method.trainable().items():
                ids = [self.local_rank] if self.device.type == "cuda" else None
                unused = name in self.method.unused_parameters or bool(self.tcfg.get("find_unused_parameters", False))
                self.method.wrap(name, nn.parallel.DistributedDataParallel(mod, device_ids=ids,
                                                                           find_unused_parameters=unused))

        ocfg = recipe.get("optim", {})
        self.optims: dict[str, torch.optim.Optimizer] = {}
        self.scheds: dict[str, torch.optim.lr_scheduler.LambdaLR] = {}
        for gname, params in self.method.param_groups().items():
            c = deep_merge(ocfg, ocfg.get(gname, {})) if isinstance(ocfg.get(gname), dict) else ocfg
            self.optims[gname] = build_optimizer(c, params)
            scfg = recipe.get("schedule", {})
            self.scheds[gname] = torch.optim.lr_scheduler.LambdaLR(self.optims[gname], lr_lambda(scfg, self.iterations))
        self.amp = bool(self.tcfg.get("amp", True)) and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        self.clip = float(self.tcfg.get("clip_grad", 0.0))
        ema = float(self.tcfg.get("ema", 0.0))
        self.ema = EMA(self.method.model, ema) if ema > 0 else None

        from .torchdata import build_dataset

        dcfg = recipe.get("data", {})
        self.batch_size = int(dcfg.get("batch_size", 2))  # per process (DDP: global = x world size)
        self.train_set = build_dataset(dcfg["train"], self.seed)
        self.stream = BatchStream(self.train_set, self.batch_size, int(dcfg.get("workers", 0)), self.rank,
                                  self.world, self.seed, self.device, bool(dcfg.get("fixed_items", False)))
        self.val_set = build_dataset(dcfg["val"], self.seed + 7919) if dcfg.get("val") else None
        self.step = 0
        self.history: list[dict] = []
        self.last_metrics: dict[str, float] = {}

    # -- logging
    def say(self, msg: str) -> None:
        """A log line (rank 0): printed and written to log.jsonl as {"msg": ...}."""
        if not self.is_main:
            return
        if not self.quiet:
            print(f"[mattekit-train] {msg}", file=sys.stderr, flush=True)
        self._write({"msg": msg})

    def _write(self, rec: dict) -> None:
        if not self.is_main:
            return
        if self._log_file is None:
            self.out.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.out / "log.jsonl", "a")
        self._log_file.write(json.dumps(rec) + "\n")
        self._log_file.flush()

    # -- checkpoints
    def checkpoint_state(self) -> dict:
        from .trainers.base import unwrap

        return {
            "step": self.step,
            "recipe": self.recipe,
            "modules": {k: unwrap(m).state_dict() for k, m in self.method.modules().items()},
            "optims": {k: o.state_dict() for k, o in self.optims.items()},
            "scheds": {k: s.state_dict() for k, s in self.scheds.items()},
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.model.state_dict() if self.ema else None,
            "rng": rng_state(),
            "data": self.stream.state(),
        }

    def save_checkpoint(self, name: str = "last.pt") -> Path | None:
        if not self.is_main:
            return None
        path = self.out / name
        tmp = path.with_suffix(".tmp")
        torch.save(self.checkpoint_state(), tmp)
        os.replace(tmp, path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        ck = torch.load(str(path), map_location=self.device, weights_only=False)
        for k, m in self.method.modules().items():
            m.load_state_dict(ck["modules"][k])
        for k, o in self.optims.items():
            o.load_state_dict(ck["optims"][k])
        for k, s in self.scheds.items():
            s.load_state_dict(ck["scheds"][k])
        self.scaler.load_state_dict(ck["scaler"])
        if self.ema and ck.get("ema") is not None:
            self.ema.model.load_state_dict(ck["ema"])
        self.step = int(ck["step"])
        self.stream.load_state(ck["data"])
        # RNG: each rank restores the saved stream then offsets by rank (as at start-up).
        set_rng_state(ck["rng"])
        if self.rank:
            torch.manual_seed(int(torch.randint(1 << 31, ())) + self.rank)
        self.say(f"resumed from {path} at step {self.step} (epoch {self.stream.epoch})")

    # -- validation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if self.val_set is None or not self.is_main:
            return {}
        from . import metrics as M

        model = self.ema.model if self.ema else self.method.model
        self.method.eval_mode()
        model.eval()
        sums: dict[str, float] = {}
        n = 0
        rows = []
        limit = int(self.tcfg.get("val_items", len(self.val_set)))
        for i in range(min(limit, len(self.val_set))):
            item = self.val_set[i]
            batch = to_device({k: (v[None] if torch.is_tensor(v) else v) for k, v in item.items()}, self.device)
            target = self.method.validation_target(batch)
            if target and target[0] == "foreground":
                pred = model.predict(batch["image"], alpha=batch["alpha"])
                pf = pred[0].permute(1, 2, 0).float().cpu().numpy()
                gf = batch["foreground"][0].permute(1, 2, 0).cpu().numpy()
                m = M.foreground_metrics(pf, gf, batch["alpha"][0, 0].cpu().numpy())
                show = [("image", item["image"].permute(1, 2, 0).numpy()), ("F pred", pf), ("F gt", gf)]
            else:
                pred = self.method.predict(batch, model)
                pa = pred[0, 0].float().cpu().numpy()
                if target:
                    ga = target[1][0, 0].cpu().numpy()
                    m = {"sad": M.sad(pa, ga), "mse": M.mse(pa, ga)}
                else:
                    ga = batch["trimap"][0, 0].cpu().numpy()
                    m = M.known_region_metrics(pa, ga)
                show = [("image", item["image"].permute(1, 2, 0).numpy()), ("pred", pa), ("target", ga)]
            for k, v in m.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
            if len(rows) < int(self.tcfg.get("sheet_rows", 8)):
                rows.append(show)
        self.method.train_mode()
        res = {f"val_{k}": v / max(1, n) for k, v in sums.items()}
        try:
            from .contact import contact_sheet, save_png

            save_png(self.out / "sheets" / f"val_{self.step:07d}.png", contact_sheet(rows, thumb=128))
        except Exception as exc:  # a sheet must never stop training
            self.say(f"contact sheet failed: {exc}")
        return res

    # -- loop
    def train(self) -> dict:
        stop = self.iterations if self.max_steps is None else min(self.iterations, self.step + self.max_steps)
        every_log = int(self.tcfg.get("log_every", 10))
        every_eval = int(self.tcfg.get("eval_every", 1000))
        every_ckpt = int(self.tcfg.get("ckpt_every", 1000))
        bar = None
        if self.is_main and not self.quiet:
            from tqdm import tqdm

            bar = tqdm(total=stop, initial=self.step, desc=self.recipe.get("name", "train"), dynamic_ncols=True)
        self.method.train_mode()
        t0 = time.time()
        while self.step < stop:
            batch = to_device(self.stream.next(), self.device)
            logs = self.method.train_step(batch, self.step, self.optims, self.scaler, self.amp, self.clip)
            for s in self.scheds.values():
                s.step()
            if self.ema:
                from .trainers.base import unwrap

                self.ema.update(unwrap(self.method.model))
            if not math.isfinite(logs["total"]):
                raise FloatingPointError(f"loss is {logs['total']} at step {self.step}")
            self.step += 1
            rec = {"step": self.step, **logs, "lr": self.optims["main"].param_groups[0]["lr"]}
            self.history.append(rec)
            if self.step % every_log == 0 or self.step == stop:
                rec["time_s"] = round(time.time() - t0, 3)
                rec["epoch"] = self.stream.epoch
                self._write(rec)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{logs['total']:.4f}")
            if self.step % every_eval == 0 or self.step == self.iterations:
                m = self.evaluate()
                if m:
                    self.last_metrics = m
                    self._write({"step": self.step, **m})
            if self.step % every_ckpt == 0 or self.step == stop:
                self.save_checkpoint()
        if bar is not None:
            bar.close()
        if self.step >= self.iterations and self.is_main and self.tcfg.get("export", True):
            from .export import export_trained

            model = self.ema.model if self.ema else self.method.model
            export_trained(model, self.out / "export", self.recipe, metrics=self.last_metrics, log=self.say,
                           onnx=bool(self.tcfg.get("export_onnx", True)))
        return {"step": self.step, "metrics": self.last_metrics}

    def close(self) -> None:
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def run(recipe: dict | str | Path, out_dir: str | Path, resume: str | Path | None = None, max_steps: int | None = None,
        device: str | None = None, quiet: bool = False) -> Trainer:
    """Train `recipe` into `out_dir`; returns the finished Trainer (history, metrics)."""
    if not isinstance(recipe, dict):
        recipe = load_recipe(recipe)
    tr = Trainer(recipe, out_dir, device=device, max_steps=max_steps, quiet=quiet)
    try:
        if resume:
            tr.load_checkpoint(resume)
        tr.train()
    finally:
        tr.close()
    return tr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mattekit-train", description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe", help="recipe TOML (a path, or a bundled name such as prn.toml)")
    ap.add_argument("--out", default=None, help="output directory (default runs/RECIPE_NAME)")
    ap.add_argument("--resume", default=None, help="checkpoint to resume from (e.g. OUT/last.pt)")
    ap.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (this run)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default=None)
    ap.add_argument("--quiet", action="store_true", help="no progress bar / stderr log lines")
    args = ap.parse_args(argv)
    recipe = load_recipe(args.recipe)
    out = args.out or str(Path("runs") / recipe["name"])
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        tr = run(recipe, out, args.resume, args.max_steps, args.device, args.quiet)
    if tr.is_main:
        print(json.dumps({"step": tr.step, "metrics": tr.last_metrics, "out": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
