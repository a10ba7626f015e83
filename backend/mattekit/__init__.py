"""mattekit: local image matting (alpha mattes and edge-colour decontamination) for GIMP and Krita."""

__version__ = "0.1.0"
