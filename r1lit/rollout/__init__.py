"""Generation: the Rollout container, the engine interface and its engines."""

from r1lit.rollout.engine import RolloutEngine
from r1lit.rollout.hf import HFEngine
from r1lit.rollout.vllm.transports import GlooTransport, NCCLTransport, WeightTransport
from r1lit.rollout.types import Rollout, SamplingConfig
from r1lit.rollout.vllm.in_process import VLLMEngine
from r1lit.rollout.vllm.server import VLLMServerEngine

__all__ = ["Rollout", "RolloutEngine", "HFEngine", "VLLMEngine", "VLLMServerEngine", "SamplingConfig",
           "WeightTransport", "GlooTransport", "NCCLTransport"]
