"""mattekit for Krita: Select Subject, Refine Selection and Decontaminate Edge Colors.

Krita imports this package at start-up (``pykrita/mattekit_krita.desktop``); outside
Krita (unit tests, tools) importing it registers nothing, so ``mattekit_krita.logic``
can be used on its own.
"""

try:
    from krita import Krita
except ImportError:  # not inside Krita
    Krita = None

if Krita is not None and Krita.instance() is not None:
    from .extension import MattekitExtension

    Krita.instance().addExtension(MattekitExtension(Krita.instance()))
