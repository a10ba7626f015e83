"""Registry of model architectures by name (timm-style).

Each model file registers its class with a plain dataclass config::

    @register_model("prn", PRNConfig, task="guided")
    class PRN(nn.Module): ...

`create_model("prn", encoder="mobilenetv2")` builds one with config overrides.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch.nn as nn

#: What a model does, which decides how the engine calls it.
TASKS = ("trimap_free", "guided", "foreground")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    cls: type
    config_cls: type
    task: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, config_cls: type, task: str) -> Callable[[type], type]:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")

    def deco(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, cls, config_cls, task)
        cls.registry_name = name
        cls.task = task
        return cls

    return deco


def list_models() -> list[str]:
    _import_all()
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    _import_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def create_model(name: str, config: Any = None, **overrides: Any) -> nn.Module:
    """Build model `name` from its config dataclass (default values, then `overrides`)."""
    entry = get_entry(name)
    cfg = config if config is not None else entry.config_cls()
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    return entry.cls(cfg)


def _import_all() -> None:
    # Importing the model modules runs their @register_model decorators.
    from . import _all  # noqa: F401
