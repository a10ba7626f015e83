"""Per-method trainers: one `Method` subclass per seed method, looked up by `method` in a recipe."""

from .base import Method, build_model, normalise_input
from .ddc import DDCMethod
from .gfm import GFMMethod
from .mg import FGNetMethod, PRNMethod
from .modnet import ModnetMethod, ModnetSocMethod
from .pomagan import PomaganMethod

METHODS: dict[str, type[Method]] = {
    m.name: m for m in (ModnetMethod, ModnetSocMethod, PRNMethod, FGNetMethod, GFMMethod, PomaganMethod, DDCMethod)
}

__all__ = ["METHODS", "Method", "build_model", "normalise_input"]
