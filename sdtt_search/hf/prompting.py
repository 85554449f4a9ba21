"""Prompts for instruct models: the chat template and an answer-format instruction.

Tasks (``tasks/``, torch-free) write plain prompts such as lm-eval's
``"Question: ...\\nAnswer:"``. For a chat model that text becomes the user turn
(without the trailing ``Answer:`` cue, which the assistant turn replaces), an
instruction saying how to write the final answer is added, and the tokenizer's
chat template is applied with ``add_generation_prompt=True``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

#: instructions appended to the user turn; both forms are read by ``tasks.gsm8k``
ANSWER_FORMATS = {
    "hash": "Reason step by step, then give the final answer as a plain number on the last line, "
            "in the form '#### <number>'.",
    "boxed": "Reason step by step, then put the final answer, a plain number, inside \\boxed{}.",
}
_CUE = re.compile(r"\n*\s*Answer:\s*$")


@dataclass(frozen=True)
class PromptFormat:
    """How a task prompt is turned into the model's input text.

    Attributes:
        chat: apply the tokenizer's chat template.
        answer_format: None, "hash" (``#### N``) or "boxed" (``\\boxed{N}``): the
            instruction added to the prompt.
        system_prompt: an optional system turn (chat only).
    """

    chat: bool = False
    answer_format: str | None = None
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        if self.answer_format is not None and self.answer_format not in ANSWER_FORMATS:
            raise ValueError(f"answer_format={self.answer_format!r} is unknown; use one of "
                             f"{', '.join(ANSWER_FORMATS)} or null")

    def user_message(self, prompt: str) -> str:
        """The user turn: the prompt without its completion cue, then the instruction."""
        text = _CUE.sub("", prompt).rstrip()
        if self.answer_format:
            text = f"{text}\n\n{ANSWER_FORMATS[self.answer_format]}"
        return text

    def render(self, prompt: str, tokenizer) -> str:
        """The text the model is conditioned on.

        With ``chat``: the chat template over [system], user turns, ending with the
        assistant turn's opening. Without: the prompt, preceded by the instruction if
        an answer format is set (the prompt's own completion cue stays last).
        """
        if not self.chat:
            return f"{ANSWER_FORMATS[self.answer_format]}\n\n{prompt}" if self.answer_format else prompt
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": self.user_message(prompt)})
        return tokenizer.apply_chat_template(messages)
