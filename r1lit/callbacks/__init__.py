"""Callbacks: what watches or serves the training without changing the optimisation."""

from r1lit.callbacks.print_groups import PrintGroups

__all__ = ["PrintGroups"]
