"""mattekit_training: data, losses, training and evaluation for mattekit's models.

Imports from `mattekit` are allowed here; `mattekit` never imports this package.
Data entry points: `open_dataset` (folders and built-in sets as `Sample` sequences) and
`torchdata.build_dataset` (recipe specs -> torch Datasets).
"""

from .datasets import MattingDataset, Sample, open_dataset

__all__ = ["MattingDataset", "Sample", "open_dataset"]
