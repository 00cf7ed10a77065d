"""Attacks: data poisoning by fake-user injection (``attacks.poisoning``)."""

from . import poisoning

__all__ = ["poisoning"]
