"""One-line notes on installed models, for the daemon's ``hello`` (``model_notes``) and the editors' model lists.

Built from the weights registry's entries (``weights_index.list_weights``): what the model is
(its ``card``: the text itself, or the first line of prose of the card file beside the weights),
its licence, and whether ``auto`` passes it over (``"auto": false``). Standard library only and
no torch: ``hello`` must stay quick.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Mapping

#: The classical methods are no registry entries; their notes are fixed.
CLASSICAL_NOTE = "closed-form matting solved in the edge band (no model); free of any model licence"
#: Longest note, characters (a dialog's list entry, not a model card).
NOTE_CHARS = 160
# The "what it is" is the card's first clause: up to a ';' or a sentence's end ('.' before a space or the end).
_FIRST_CLAUSE = re.compile(r"^(.*?)(?:;\s|\.\s|\.$|$)", re.S)


def _card_text(entry: Mapping[str, Any]) -> str:
    """The card's text: a card file's (``*.md`` beside the weights) first line of prose, else the card itself."""
    card = str(entry.get("card") or "").strip()
    if card.endswith(".md") and "\n" not in card:
        path = Path(str(entry.get("registry") or "")) / card
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return next((ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith(("#", "|", "!", "<"))), "")
    return card


def _what(entry: Mapping[str, Any]) -> str:
    text = " ".join(_card_text(entry).split())
    clause = _FIRST_CLAUSE.match(text).group(1).strip() if text else ""
    if clause:
        return clause
    task = {"trimap_free": "subject model", "guided": "refine model", "foreground": "colour model"}.get(str(entry.get("task")), "model")
    return f"{entry.get('arch') or 'unknown'} {task}"


def _licence(entry: Mapping[str, Any]) -> str:
    """The licence's name: "Apache-2.0; see u2netp.LICENSE.txt ..." -> "Apache-2.0"."""
    text = str(entry.get("licence") or "").split(";")[0].split(" (")[0].strip()
    return text or "licence not stated"


def model_note(entry: Mapping[str, Any]) -> str:
    """One line on a weights registry entry: what it is, its licence, and "not chosen by auto"
    when ``entry["auto"]`` is False. At most NOTE_CHARS characters, no line breaks."""
    parts = [_what(entry), _licence(entry)]
    if entry.get("auto") is False:
        parts.append("not chosen by auto")
    what, rest = parts[0], "; " + "; ".join(parts[1:])
    if len(what) + len(rest) > NOTE_CHARS:  # the licence and the auto flag are never cut
        what = what[: max(10, NOTE_CHARS - len(rest) - 1)].rstrip() + "…"
    return what + rest


def model_notes(models: Mapping[str, Iterable[str]], weights: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """{name: note} for every model named in ``models`` (``hello``'s models by task): registry
    entries from ``weights`` (``list_weights()``), the classical methods' fixed note."""
    out: dict[str, str] = {}
    for names in models.values():
        for name in names:
            if name == "classical":
                out[name] = CLASSICAL_NOTE
            elif name in weights:
                out[name] = model_note(weights[name])
    return out
