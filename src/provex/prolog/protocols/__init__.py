"""The four inference protocols as explicit state machines.

- ``single``: one sample.
- ``best-of-n``: up to N samples, first program that yields a number (or a majority
  vote over all N).
- ``agentic-internal``: one dialogue with Prolog feedback, repair and resets.
- ``agentic-independent``: a fresh dialogue after each failure, one shared turn
  budget.

Example:
    >>> from provex.prolog.protocols import build_protocol, Question, run_episodes
    >>> protocol = build_protocol("single", system_prompt="You write Prolog.")
    >>> # episodes = [protocol.start(q, Executor()) for q in questions]
    >>> # outcomes = run_episodes(episodes, generator)
"""

from __future__ import annotations

from collections.abc import Sequence

from provex.prolog.generation import SamplingParams
from provex.prolog.protocols.agentic import (
    AgenticConfig,
    AgenticProtocol,
    ToolCall,
    agentic_independent,
    agentic_internal,
    failure_feedback,
    parse_tool_call,
)
from provex.prolog.protocols.base import (
    Attempt,
    Episode,
    Execution,
    Executor,
    Outcome,
    Protocol,
    Question,
    Request,
    prepare_tool_program,
    run_episodes,
)
from provex.prolog.protocols.sampling import SELECTIONS, BestOfN, Single, build_chat

PROTOCOL_NAMES: tuple[str, ...] = (
    "single",
    "best-of-n",
    "agentic-internal",
    "agentic-independent",
)


def build_protocol(
    name: str,
    system_prompt: str,
    *,
    params: SamplingParams | None = None,
    n: int = 20,
    selection: str = "first-numeric",
    agentic: AgenticConfig | None = None,
    few_shot: Sequence[tuple[str, str]] = (),
) -> Protocol:
    """Create a protocol by name.

    Args:
        name: one of ``PROTOCOL_NAMES``.
        system_prompt: the system message.
        params: sampling settings of ``single`` and ``best-of-n``.
        n: samples of ``best-of-n``.
        selection: ``first-numeric`` or ``majority`` for ``best-of-n``.
        agentic: settings of the agentic protocols.
        few_shot: worked ``(user, assistant)`` examples put before the question.
    """
    if name == "single":
        return Single(system_prompt, params=params, few_shot=few_shot)
    if name == "best-of-n":
        return BestOfN(
            system_prompt, n=n, selection=selection, params=params, few_shot=few_shot
        )
    if name in ("agentic-internal", "agentic-independent"):
        return AgenticProtocol(
            system_prompt,
            independent=name == "agentic-independent",
            config=agentic,
            few_shot=few_shot,
        )
    raise ValueError(
        f"unknown protocol {name!r}; use one of {', '.join(PROTOCOL_NAMES)}"
    )


__all__: list[str] = [
    "PROTOCOL_NAMES",
    "SELECTIONS",
    "AgenticConfig",
    "AgenticProtocol",
    "Attempt",
    "BestOfN",
    "Episode",
    "Execution",
    "Executor",
    "Outcome",
    "Protocol",
    "Question",
    "Request",
    "Single",
    "ToolCall",
    "agentic_independent",
    "agentic_internal",
    "build_chat",
    "build_protocol",
    "failure_feedback",
    "parse_tool_call",
    "prepare_tool_program",
    "run_episodes",
]
