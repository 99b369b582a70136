"""Prompt templates: how a problem becomes the text the policy continues."""

from __future__ import annotations

from abc import ABC, abstractmethod

from r1lit.errors import ConfigError

R1_ZERO_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The assistant "
    "first thinks about the reasoning process in the mind and then provides the user with the answer. The reasoning "
    "process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., "
    "<think> reasoning process here </think><answer> answer here </answer>"
)


class PromptTemplate(ABC):
    """Turns one problem into prompt text. ``add_special_tokens`` says whether the tokenizer should add its own
    (False when the text already carries them, as chat templates do)."""

    add_special_tokens: bool = False

    @abstractmethod
    def render(self, problem: str, tokenizer) -> str:
        """The prompt text for ``problem``."""


class ChatPrompt(PromptTemplate):
    """The seed's prompt: the R1-Zero system prompt and the problem through the tokenizer's chat template."""

    def __init__(self, system_prompt: str = R1_ZERO_SYSTEM_PROMPT, prefill: str = ""):
        """
        Args:
            system_prompt: system message; empty for none.
            prefill: text placed at the start of the assistant turn (``"<think>"`` nudges models that ignore the
                format; the format reward counts a pre-filled ``<think>``).
        """
        self.system_prompt = system_prompt
        self.prefill = prefill

    def render(self, problem: str, tokenizer) -> str:
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                "the tokenizer has no chat template; use `prompt: {class_path: PlainPrompt}` for base models"
            )
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": problem})
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text + self.prefill


class PlainPrompt(PromptTemplate):
    """The R1-Zero paper's plain-text template for base models, ending in ``Assistant: <think>``."""

    add_special_tokens = True

    def __init__(self, preamble: str = R1_ZERO_SYSTEM_PROMPT):
        """
        Args:
            preamble: text before ``User:``; the R1-Zero instruction by default.
        """
        self.preamble = preamble

    def render(self, problem: str, tokenizer) -> str:
        return f"{self.preamble}. User: {problem.strip()}. Assistant: <think>"
