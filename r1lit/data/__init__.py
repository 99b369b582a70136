"""Problems, prompts and the DataModule."""

from r1lit.data.batch import ProblemBatch
from r1lit.data.tasks.arithmetic import ArithmeticSource
from r1lit.data.tasks.carries import CarryAdditionSource
from r1lit.data.datamodule import MathDataModule
from r1lit.data.tasks.expressions import TwoStepSource
from r1lit.data.prompts import R1_ZERO_SYSTEM_PROMPT, ChatPrompt, PlainPrompt, PromptTemplate
from r1lit.data.sources import DatasetSource, ProblemSource
from r1lit.data.tasks.word_problems import WordProblemSource

__all__ = [
    "MathDataModule", "ProblemBatch", "ProblemSource", "DatasetSource", "ArithmeticSource",
    "CarryAdditionSource", "TwoStepSource", "WordProblemSource",
    "PromptTemplate", "ChatPrompt", "PlainPrompt", "R1_ZERO_SYSTEM_PROMPT",
]
