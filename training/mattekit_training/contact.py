"""Contact sheets: re-exported from `mattekit.contact`, where the CLI also uses them.

(Training imports from mattekit, never the other way round, so the drawing code lives there.)
"""

from mattekit.contact import checkerboard, contact_sheet, cutout, matting_sheet, save_png, to_rgb8

__all__ = ["checkerboard", "contact_sheet", "cutout", "matting_sheet", "save_png", "to_rgb8"]
