"""Problems, prompts and the DataModule."""

from r1lit.data.arithmetic import ArithmeticSource
from r1lit.data.datamodule import MathDataModule
from r1lit.data.prompts import R1_ZERO_SYSTEM_PROMPT, ChatPrompt, PlainPrompt, PromptTemplate
from r1lit.data.sources import DatasetSource, ProblemSource

__all__ = [
    "MathDataModule", "ProblemSource", "DatasetSource", "ArithmeticSource",
    "PromptTemplate", "ChatPrompt", "PlainPrompt", "R1_ZERO_SYSTEM_PROMPT",
]
