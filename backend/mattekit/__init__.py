"""mattekit: local image matting (alpha mattes and edge-colour decontamination) for GIMP and Krita."""

__version__ = "0.1.0"

#: The Python API (mattekit.api), loaded on first use so that `import mattekit` stays light.
_API = ("select_subject", "refine_selection", "decontaminate", "cutout", "run", "MatteError")


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'mattekit' has no attribute {name!r}")


__all__ = ["__version__", *_API]
