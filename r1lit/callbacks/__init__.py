"""Callbacks: what watches or serves the training without changing the optimisation."""

from r1lit.callbacks.aha_monitor import AhaMonitor
from r1lit.callbacks.completion_log import CompletionLog
from r1lit.callbacks.graceful_stop import GracefulStop
from r1lit.callbacks.health import TrainingHealth
from r1lit.callbacks.hf_export import HFExport
from r1lit.callbacks.host_memory import KeepFreedHostMemory
from r1lit.callbacks.print_groups import PrintGroups
from r1lit.callbacks.step_progress import StepProgressBar
from r1lit.callbacks.vllm_engine import VLLMEngineCallback, VLLMRollout

__all__ = ["AhaMonitor", "CompletionLog", "GracefulStop", "HFExport", "KeepFreedHostMemory", "PrintGroups",
           "StepProgressBar", "TrainingHealth", "VLLMEngineCallback", "VLLMRollout"]
