"""Matting networks (MODNet, MG Matting's PRN and foreground net, GFM) and their weights."""

from .registry import ModelEntry, create_model, get_entry, list_models, register_model

__all__ = ["ModelEntry", "create_model", "get_entry", "list_models", "register_model"]
