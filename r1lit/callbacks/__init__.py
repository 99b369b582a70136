"""Callbacks: what watches or serves the training without changing the optimisation."""

from r1lit.callbacks.graceful_stop import GracefulStop
from r1lit.callbacks.print_groups import PrintGroups
from r1lit.callbacks.vllm_rollout import VLLMRollout

__all__ = ["GracefulStop", "PrintGroups", "VLLMRollout"]
