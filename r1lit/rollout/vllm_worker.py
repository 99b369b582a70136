"""An alias for attach commands that name the short path: ``--worker-extension-cls
r1lit.rollout.vllm_worker.R1LitWorkerExtension`` is the same class as ``r1lit.rollout.vllm.worker.R1LitWorkerExtension``."""

from r1lit.rollout.vllm.worker import R1LitWorkerExtension

__all__ = ["R1LitWorkerExtension"]
