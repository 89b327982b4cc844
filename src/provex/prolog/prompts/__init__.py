"""System prompts for Prolog answers, and the two ways of rendering a conversation.

API summary:

- ``PROMPT_NAMES``: ``base``, ``struct``, ``reflect``, ``declare`` (the four training
  prompts), ``tool`` (the agentic prompt that declares the ``run_prolog`` tool) and
  ``mmlu`` (the tool prompt for multiple-choice answers as a zero-based index).
- ``load_prompt(name) -> str``: one prompt; ``sp-struct``/``sp_struct`` are aliases,
  and a path to a text file loads that file.
- ``user_message(question)``: the instruction sentence, a newline, then the question.
- ``build_messages(question, prompt="struct")``: ``[system, user]`` chat messages.
- ``render_chat(messages, tokenizer)``: text through the tokenizer's chat template.
- ``render_plain(messages)``: ``"(SYSTEM) ...\\n(USER) ..."`` from the first system and
  the first user message, with no assistant cue.
- ``render_transcript(messages)``: every message as ``"(ROLE) content"``, separated by
  blank lines (the agentic dialogue format, where tool results read ``(TOOL) 13000``).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

PROMPT_NAMES: tuple[str, ...] = ("base", "struct", "reflect", "declare", "tool", "mmlu")
TRAINING_PROMPTS: tuple[str, ...] = ("base", "struct", "reflect", "declare")
INSTRUCTION = "Please generate a piece of Prolog code to solve the given math problem."
TOOL_USER_PREFIX = "Please solve this problem: "

Message = dict[str, Any]


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    if key.startswith("sp_"):
        key = key[3:]
    return key


@cache
def _packaged(name: str) -> str:
    text = resources.files(__name__).joinpath(f"{name}.txt").read_text("utf-8")
    return text.strip("\n")


def load_prompt(name: str) -> str:
    """Return a system prompt by name, or the text of a prompt file.

    Args:
        name: one of ``PROMPT_NAMES`` (``sp-`` and ``sp_`` prefixes are accepted),
            or a path to a UTF-8 text file.

    Raises:
        ValueError: when the name is unknown and no such file exists.

    Example:
        >>> load_prompt("sp-struct").startswith("You are")
        True
    """
    key = _canonical(name)
    if key in PROMPT_NAMES:
        return _packaged(key)
    path = Path(name).expanduser()
    if path.is_file():
        return path.read_text("utf-8").strip("\n")
    raise ValueError(
        f"unknown system prompt {name!r}; use one of {', '.join(PROMPT_NAMES)} or "
        "the path of a text file"
    )


def user_message(question: str, instruction: str | None = INSTRUCTION) -> str:
    """Return the user turn: ``instruction + "\\n" + question`` (question alone if
    ``instruction`` is empty)."""
    question = question.strip()
    return f"{instruction}\n{question}" if instruction else question


def build_messages(
    question: str,
    prompt: str = "struct",
    *,
    instruction: str | None = INSTRUCTION,
    tool_prefix: bool | None = None,
) -> list[Message]:
    """Return ``[system, user]`` chat messages for one question.

    Args:
        question: the problem text.
        prompt: a prompt name for ``load_prompt`` or a path.
        instruction: the sentence put before the question (``None`` for none).
        tool_prefix: put ``"Please solve this problem: "`` before the user turn;
            by default only for the ``tool`` and ``mmlu`` prompts.
    """
    if tool_prefix is None:
        tool_prefix = _canonical(prompt) in ("tool", "mmlu")
    user = user_message(question, instruction)
    if tool_prefix:
        user = TOOL_USER_PREFIX + user
    return [
        {"role": "system", "content": load_prompt(prompt)},
        {"role": "user", "content": user},
    ]


def render_plain(messages: list[Message]) -> str:
    """Render the first system and first user message as ``(SYSTEM) s\\n(USER) u``.

    This is the evaluation-time prompt of the reference system: raw text with no
    chat template and no assistant cue. Missing roles are left out.
    """
    system = next((m["content"] for m in messages if m["role"] == "system"), None)
    user = next((m["content"] for m in messages if m["role"] == "user"), None)
    lines = []
    if system is not None:
        lines.append(f"(SYSTEM) {system}")
    if user is not None:
        lines.append(f"(USER) {user}")
    return "\n".join(lines)


def render_transcript(messages: list[Message]) -> str:
    """Render every message as ``(ROLE) content``, joined by blank lines."""
    return "\n\n".join(f"({m['role'].upper()}) {m['content']}" for m in messages)


def render_chat(
    messages: list[Message], tokenizer: Any, *, add_generation_prompt: bool = True
) -> str:
    """Render messages with the tokenizer's chat template, ending in the assistant cue.

    Raises:
        ValueError: when the tokenizer has no chat template.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer {type(tokenizer).__name__} has no chat template; use "
            "render_plain for raw '(SYSTEM)/(USER)' text or set tokenizer.chat_template"
        )
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def render(
    messages: list[Message], mode: str = "chat", tokenizer: Any | None = None
) -> str:
    """Render messages as ``mode="chat"`` (needs ``tokenizer``) or ``mode="plain"``."""
    if mode == "plain":
        return render_plain(messages)
    if mode == "chat":
        if tokenizer is None:
            raise ValueError("chat rendering needs a tokenizer; pass tokenizer=...")
        return render_chat(messages, tokenizer)
    raise ValueError(f"unknown render mode {mode!r}; use 'chat' or 'plain'")
