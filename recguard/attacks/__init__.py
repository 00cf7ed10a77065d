"""Attacks: data poisoning by fake-user injection (``attacks.poisoning``) and model
extraction from top-k lists (``attacks.extraction``)."""

from . import extraction, poisoning

__all__ = ["poisoning", "extraction"]
