"""Agentic protocols: a dialogue in which the model runs Prolog and repairs its answer.

Every turn the model writes either a tool call
``<tool_call>{"name": "run_prolog", "arguments": {"code": ...}}</tool_call>``, whose
result comes back as a ``tool`` message, or an ``<answer>`` block, which the harness
runs itself. Both go through the ``run_prolog`` tool semantics: the CLP(Q) import is
added when missing and ``solve/1`` is derived from the first unary rule when absent.

Per turn (defaults in :class:`AgenticConfig`, the published constants):

1. Before generating: when the conversation uses over 95% of the token budget it is
   cut back to the system and user messages plus a note asking for brevity.
2. An empty completion raises the temperature (x1.15 x1.2, capped at 0.3) and adds a
   hint. A second empty completion in a row resets the dialogue, the temperature and
   the duplicate tracking. After 20 empty completions the question is given up.
3. The completion is appended. A conversation now over the budget is reset to the
   system and user messages plus a note that the context was too long.
4. A well-formed tool call is run and its result appended; a malformed one (bad
   JSON, list arguments, unknown tool, missing ``code``) gets an explanation back.
   Either way the turn ends there.
5. A completion without an ``<answer>`` block ends the turn.
6. A repeated answer (whitespace-normalised) counts as a duplicate: every 2nd
   duplicate raises the temperature (x1.15, capped at 0.3) and is not run, the 5th
   brings a reminder of the minimal answer skeleton, later odd ones reset the
   dialogue, and the 1st and 3rd are run again. A new answer resets the temperature
   to 0.2. After 20 duplicates the question is given up.
7. The answer is run. A number ends the episode. Failures 1 and 2 get feedback
   with the answer skeleton; the 3rd resets the dialogue with a request to start
   over.

``agentic-independent`` runs the same turn, but an empty completion, a budget
overrun, the duplicate reset or the 3rd failure ends the current try, and a fresh
dialogue starts. All tries share one budget of 20 turns; temperature and duplicate
tracking start over with each try.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from provex.prolog.answers import extract_answer
from provex.prolog.generation import ANSWER_STOP, Chat, Generation, SamplingParams
from provex.prolog.protocols.base import (
    Attempt,
    Episode,
    Executor,
    Protocol,
    Question,
    Request,
)

TOOL_NAME = "run_prolog"
_TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)

SKELETON = (
    "<answer>\n:- use_module(library(clpq)).\nsolve(X) :- {X = final_number}.\n"
    "</answer>"
)
EXAMPLE_CALL = (
    '<tool_call>{"name": "run_prolog", "arguments": {"code": '
    '":- use_module(library(clpq)).\\nsolve(X) :- {X = final_number}."}}</tool_call>'
)
NOTE_CONCISE = (
    "The conversation was shortened to fit the context window. Keep the reasoning "
    "short and give the <answer> block right away."
)
NOTE_TOO_LONG = (
    "The previous context grew too long and was cleared. Solve the problem again, "
    "briefly."
)
NOTE_EMPTY = (
    "Your last reply was empty. Write brief reasoning, then an <answer> block with a "
    "Prolog program that defines solve(X)."
)
NOTE_FRESH = (
    "Several programs in a row gave no number. Forget the earlier attempts and solve "
    "the problem again with a different approach."
)
NOTE_REMINDER = (
    "REMINDER: you keep sending the same program. Reply with only this skeleton, the "
    f"number filled in, and a tool call that runs it:\n{SKELETON}\n{EXAMPLE_CALL}"
)


def failure_feedback(result: str) -> str:
    """Return the user message sent after an answer that gave no number."""
    return (
        f"Running your program did not give a number (result: {result}).\n"
        "1. Find what went wrong in the reasoning or the code.\n"
        "2. Redo the arithmetic.\n"
        f"3. Answer with this skeleton, the number filled in:\n{SKELETON}\n"
        f"You can check it first with a tool call:\n{EXAMPLE_CALL}"
    )


def bad_tool_call_feedback(problem: str) -> str:
    """Return the tool message sent back for a tool call that could not run."""
    return (
        f"The tool call was not run: {problem}. Call the tool as "
        '<tool_call>{"name": "run_prolog", "arguments": {"code": "<program>"}}'
        "</tool_call>"
    )


@dataclass(frozen=True)
class ToolCall:
    """A parsed tool call: the program to run, or why the call is malformed."""

    code: str | None = None
    error: str | None = None
    closed: bool = True


def parse_tool_call(text: str) -> ToolCall | None:
    """Parse the first ``<tool_call>...</tool_call>`` block of a completion.

    Returns:
        ``None`` when there is no tool call; otherwise a :class:`ToolCall` with
        either ``code`` set or ``error`` describing the problem. Arguments given as a
        JSON-encoded string (the OpenAI convention) are decoded.

    Example:
        >>> parse_tool_call('<tool_call>{"name": "run_prolog", '
        ...                 '"arguments": {"code": "solve(4)."}}</tool_call>').code
        'solve(4).'
    """
    match = _TOOL_CALL.search(text)
    if match is None:
        if "<tool_call>" in text:
            return ToolCall(
                error="the <tool_call> block is not closed with </tool_call>",
                closed=False,
            )
        return None
    raw = match.group(1).strip()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        return ToolCall(
            error=f"the tool call is not valid JSON ({err.msg} at character {err.pos})"
        )
    if not isinstance(data, dict):
        return ToolCall(
            error='the tool call must be a JSON object with "name" and "arguments"'
        )
    name = data.get("name")
    if name != TOOL_NAME:
        return ToolCall(error=f"unknown tool {name!r}; the only tool is {TOOL_NAME}")
    arguments = data.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return ToolCall(error='"arguments" is a string that is not valid JSON')
    if isinstance(arguments, list):
        return ToolCall(
            error='"arguments" must be an object such as {"code": "..."}, not a list'
        )
    if not isinstance(arguments, dict):
        return ToolCall(error='"arguments" is missing or is not a JSON object')
    code = arguments.get("code")
    if not isinstance(code, str) or not code.strip():
        return ToolCall(error='"arguments" has no non-empty "code" string')
    return ToolCall(code=code)


@dataclass(frozen=True)
class AgenticConfig:
    """Settings of the agentic protocols; the defaults are the published constants."""

    base_temperature: float = 0.2
    shake_factor: float = 1.15  # temperature multiplier on every 2nd duplicate
    shake_every: int = 2  # duplicates between temperature raises
    escalate_after: int = 5  # duplicate count that brings the skeleton reminder
    cap_temperature: float = 0.3
    max_duplicates: int = 20  # duplicates before giving up
    empty_retries: int = 20  # empty completions before giving up
    empty_boost: float = 1.2  # extra multiplier on the first empty completion
    max_turns: int = 20  # generations per question, all tries together
    token_budget: int = 1950  # tokens of the rendered conversation
    budget_margin: float = 0.95  # share of the budget that triggers a pre-turn cut
    failures_before_reset: int = 3  # non-numeric results before a reset
    top_p: float = 0.95
    max_tokens: int = 512  # new tokens per turn
    stop: tuple[str, ...] = (ANSWER_STOP,)
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("shake_every", "escalate_after", "max_turns", "token_budget"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.failures_before_reset < 1:
            raise ValueError(
                f"failures_before_reset must be >= 1, got {self.failures_before_reset}"
            )
        object.__setattr__(self, "stop", tuple(self.stop))


def _estimate_tokens(chat: Chat) -> int:
    return math.ceil(sum(len(m["content"]) for m in chat.messages) / 4)


class _AgenticEpisode(Episode):
    def __init__(
        self, question: Question, executor: Executor, protocol: AgenticProtocol
    ) -> None:
        super().__init__(question, executor)
        self.protocol = protocol
        self.cfg = protocol.agentic
        self.base = protocol.base_messages(question)
        self.messages = list(self.base)
        self.temperature = self.cfg.base_temperature
        self.try_index = 0
        self.failures = 0
        self.consecutive_empty = 0
        self.total_empty = 0
        self.duplicates = 0
        self.seen: set[str] = set()
        self.temperatures: list[float] = []  # temperature of every generation

    # --- helpers -----------------------------------------------------------

    @property
    def independent(self) -> bool:
        return self.protocol.independent

    def _tokens(self) -> int:
        return self.protocol.count_tokens(Chat(self.messages, separator="\n\n"))

    def _note(self, event: str) -> None:
        if self.attempts:
            self.attempts[-1].events.append(event)

    def _reset(self, note: str | None = None, role: str = "system") -> None:
        self.messages = list(self.base)
        if note:
            self.messages.append({"role": role, "content": note})

    def _shake(self, factor: float) -> None:
        self.temperature = min(self.temperature * factor, self.cfg.cap_temperature)

    def _end_try(self, reason: str) -> None:
        self._note(f"end_try:{reason}")
        self.try_index += 1
        self.messages = list(self.base)
        self.temperature = self.cfg.base_temperature
        self.failures = 0
        self.consecutive_empty = 0
        self.duplicates = 0
        self.seen = set()

    # --- state machine -------------------------------------------------------

    def request(self) -> Request:
        grown = len(self.messages) > len(self.base)
        if grown and self._tokens() > self.cfg.budget_margin * self.cfg.token_budget:
            if self.independent:
                self._end_try("budget")
            else:
                self._note("reset:budget")
                self._reset(NOTE_CONCISE)
        params = SamplingParams(
            temperature=self.temperature,
            top_p=self.cfg.top_p,
            max_tokens=self.cfg.max_tokens,
            stop=self.cfg.stop,
            # Turn k uses seed + k so that retries do not repeat the same sample.
            seed=None if self.cfg.seed is None else self.cfg.seed + len(self.attempts),
        )
        return Request(Chat(list(self.messages), separator="\n\n"), params)

    def feed(self, generations: Sequence[Generation]) -> None:
        (generation,) = generations
        self.temperatures.append(self.temperature)
        attempt = self._new_attempt(generation, self.temperature)
        attempt.try_index = self.try_index
        self._turn(attempt)
        if not self.done and len(self.attempts) >= self.cfg.max_turns:
            attempt.events.append("give_up")
            self._finish("turns_exhausted", tries=self.try_index + 1)

    def _turn(self, attempt: Attempt) -> None:
        text = attempt.text
        if not text.strip():
            self._empty(attempt)
            return
        self.consecutive_empty = 0
        self.messages.append({"role": "assistant", "content": text})
        if self._tokens() > self.cfg.token_budget:
            if self.independent:
                attempt.action = "overflow"
                self._end_try("overflow")
                return
            attempt.events.append("reset:overflow")
            self._reset(NOTE_TOO_LONG)

        call = parse_tool_call(text)
        if call is not None and not call.closed and extract_answer(text) is not None:
            call = None  # an unclosed tag before a complete answer is prose
        if call is not None:
            self._tool_call(attempt, call)
            return

        answer = extract_answer(text)
        if answer is None:
            attempt.action = "no_answer"
            return
        if not self._check_duplicate(attempt, answer):
            return
        execution = self._execute(attempt, tool=True)
        if execution.numeric:
            self._finish("numeric", attempt, tries=self.try_index + 1)
            return
        self.failures += 1
        if self.failures % self.cfg.failures_before_reset == 0:
            if self.independent:
                self._end_try("failures")
            else:
                attempt.events.append("reset:failures")
                self._reset(NOTE_FRESH)
            return
        attempt.events.append("feedback")
        self.messages.append(
            {"role": "user", "content": failure_feedback(execution.describe())}
        )

    def _empty(self, attempt: Attempt) -> None:
        attempt.action = "empty"
        self.total_empty += 1
        self.consecutive_empty += 1
        if self.total_empty >= self.cfg.empty_retries:
            attempt.events.append("give_up")
            self._finish("empty_limit", tries=self.try_index + 1)
        elif self.independent:
            self._end_try("empty")
        elif self.consecutive_empty == 1:
            self._shake(self.cfg.shake_factor * self.cfg.empty_boost)
            attempt.events.append("hint:empty")
            self.messages.append({"role": "system", "content": NOTE_EMPTY})
        else:
            attempt.events.append("reset:empty")
            self._reset()
            self.temperature = self.cfg.base_temperature
            self.duplicates = 0
            self.seen = set()
            self.consecutive_empty = 0

    def _tool_call(self, attempt: Attempt, call: ToolCall) -> None:
        if call.error is not None:
            attempt.action = "bad_tool_call"
            attempt.error_class = None
            self.messages.append(
                {"role": "tool", "content": bad_tool_call_feedback(call.error)}
            )
            return
        attempt.action = "tool_call"
        attempt.program = call.code
        execution = self.executor.run(call.code, self.question.gold, tool=True)
        attempt.record(execution)
        self.messages.append({"role": "tool", "content": execution.describe()})

    def _check_duplicate(self, attempt: Attempt, answer: str) -> bool:
        """Track repeated answers; return True when the answer should be run."""
        key = " ".join(answer.split())
        if key not in self.seen:
            self.seen.add(key)
            self.temperature = self.cfg.base_temperature
            return True
        self.duplicates += 1
        attempt.action = "duplicate"
        attempt.program = answer
        attempt.error_class = None
        count = self.duplicates
        if count >= self.cfg.max_duplicates:
            attempt.events.append("give_up")
            self._finish("duplicate_limit", tries=self.try_index + 1)
            return False
        if count % self.cfg.shake_every == 0:
            self._shake(self.cfg.shake_factor)
            attempt.events.append("shake")
            return False
        if count == self.cfg.escalate_after:
            attempt.events.append("reminder")
            self.messages.append({"role": "system", "content": NOTE_REMINDER})
            return False
        if count > self.cfg.escalate_after:
            if self.independent:
                self._end_try("duplicates")
            else:
                attempt.events.append("reset:duplicates")
                self._reset()
                self.temperature = self.cfg.base_temperature
            return False
        attempt.action = "executed"
        attempt.events.append("rerun_duplicate")
        return True


class AgenticProtocol(Protocol):
    """Dialogue with Prolog feedback: ``agentic-internal`` or ``agentic-independent``.

    Args:
        system_prompt: the system message, normally the tool prompt.
        independent: end the try on a failure and start a fresh dialogue, sharing
            the turn budget (``agentic-independent``) instead of repairing in place.
        config: constants and sampling settings.
        user_prefix: text put before the user message.
        few_shot: worked ``(user, assistant)`` examples put before the question.
        count_tokens: token counter for a rendered chat; bound to the generator by
            :meth:`bind`, four characters per token until then.
    """

    def __init__(
        self,
        system_prompt: str,
        independent: bool = False,
        config: AgenticConfig | None = None,
        user_prefix: str = "Solve this problem: ",
        few_shot: Sequence[tuple[str, str]] = (),
        count_tokens: Callable[[Chat], int] | None = None,
    ) -> None:
        self.system_prompt = system_prompt
        self.independent = independent
        self.agentic = config or AgenticConfig()
        self.user_prefix = user_prefix
        self.few_shot = list(few_shot)
        self.count_tokens = count_tokens or _estimate_tokens
        self.name = "agentic-independent" if independent else "agentic-internal"

    def bind(self, generator: Any) -> None:
        """Count tokens with the generator's tokenizer."""
        self.count_tokens = generator.count_prompt_tokens

    def base_messages(self, question: Question) -> list[dict[str, str]]:
        """Return the opening messages of a dialogue: system, examples, user."""
        messages = [{"role": "system", "content": self.system_prompt}]
        for shot_user, shot_answer in self.few_shot:
            messages.append({"role": "user", "content": self.user_prefix + shot_user})
            messages.append({"role": "assistant", "content": shot_answer})
        messages.append({"role": "user", "content": self.user_prefix + question.user})
        return messages

    def start(self, question: Question, executor: Executor) -> Episode:
        return _AgenticEpisode(question, executor, self)

    def config(self) -> dict[str, Any]:
        settings = asdict(self.agentic)
        settings["stop"] = list(self.agentic.stop)
        return {"name": self.name, "few_shot": len(self.few_shot), **settings}


def agentic_internal(system_prompt: str, **kwargs: Any) -> AgenticProtocol:
    """Create the ``agentic-internal`` protocol (repair inside one dialogue)."""
    return AgenticProtocol(system_prompt, independent=False, **kwargs)


def agentic_independent(system_prompt: str, **kwargs: Any) -> AgenticProtocol:
    """Create the ``agentic-independent`` protocol (fresh dialogue per failure)."""
    return AgenticProtocol(system_prompt, independent=True, **kwargs)
