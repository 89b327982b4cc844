"""Shared pieces of the inference protocols: questions, attempts, execution, driver.

A protocol turns one :class:`Question` into an :class:`Episode`, a small state machine
that asks for one generation at a time (:meth:`Episode.request`), consumes it
(:meth:`Episode.feed`) and finally reports an :class:`Outcome`. :func:`run_episodes`
drives many episodes in lockstep so that their generations share backend batches.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from provex.prolog.answers import ErrorClass, classify_result, extract_answer
from provex.prolog.generation import Chat, Generation, Generator, SamplingParams

if TYPE_CHECKING:
    from provex.prolog.engine import PrologPool

logger = logging.getLogger(__name__)

CLPQ_IMPORT = ":- use_module(library(clpq))."
_FIRST_UNARY_RULE = re.compile(
    r"^\s*([a-z]\w*)\(\s*([A-Z_]\w*)\s*\)\s*:-", re.MULTILINE
)


@dataclass
class Question:
    """One benchmark item.

    ``user`` is the user turn (instruction and question) and ``gold`` the expected
    number (a GSM8K answer, or the zero-based option index of a multiple-choice
    question).
    """

    id: str
    user: str
    gold: Any
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Execution:
    """The result of running one program with the goal ``solve(X)``."""

    status: str  # engine status, or "no_code" when nothing was run
    value: float | None  # the number bound to X, when it is one
    text: str | None  # X as SWI-Prolog writes it, e.g. "15r2"
    error_class: ErrorClass
    seconds: float
    error: str | None = None

    @property
    def numeric(self) -> bool:
        """True when the program produced a number, right or wrong."""
        return self.error_class in (ErrorClass.CORRECT, ErrorClass.WRONG)

    def describe(self) -> str:
        """Describe the result in one line for tool feedback."""
        if self.numeric:
            return self.text or _format_value(self.value)
        if self.status == "no_code":
            return "no program was given"
        if self.status == "ok":
            shown = self.text if self.text is not None else "nothing"
            return f"X = {shown}, which is not a number ({self.error_class})"
        detail = f": {self.error}" if self.error else ""
        return f"{self.status}{detail}"


def _format_value(value: float | None) -> str:
    if value is None:
        return "none"
    return str(int(value)) if float(value).is_integer() else repr(value)


def prepare_tool_program(code: str) -> str:
    """Complete a program the way the ``run_prolog`` tool does before running it.

    Prepends the CLP(Q) import when it is missing. When no ``solve(`` occurs,
    appends ``solve(X) :- p(X).`` for the first rule of the form ``p(V) :-``.

    Example:
        >>> print(prepare_tool_program("total(T) :- {T = 2 + 3}."))
        :- use_module(library(clpq)).
        total(T) :- {T = 2 + 3}.
        solve(X) :- total(X).
    """
    program = code.strip()
    if CLPQ_IMPORT.rstrip(".") not in program:
        program = f"{CLPQ_IMPORT}\n{program}"
    if "solve(" not in program:
        match = _FIRST_UNARY_RULE.search(program)
        if match is not None:
            program = f"{program}\nsolve(X) :- {match.group(1)}(X)."
    return program


class Executor:
    """Runs programs in a Prolog pool and classifies the results against gold.

    Args:
        pool: a :class:`provex.prolog.engine.PrologPool`; the process-wide shared
            pool when omitted.
        query: the goal to run.
        variable: the query variable bound to the answer.
    """

    def __init__(
        self,
        pool: PrologPool | None = None,
        query: str = "solve(X)",
        variable: str = "X",
    ) -> None:
        self._pool = pool
        self.query = query
        self.variable = variable
        self.seconds = 0.0  # time spent in Prolog calls, summed over threads
        self._lock = threading.Lock()

    @property
    def pool(self) -> PrologPool:
        if self._pool is None:
            from provex.prolog.engine import shared_pool

            self._pool = shared_pool()
        return self._pool

    def run(self, code: str | None, gold: Any, tool: bool = False) -> Execution:
        """Run one program; ``tool=True`` completes it first with
        :func:`prepare_tool_program`."""
        if not code:
            return Execution("no_code", None, None, ErrorClass.NO_CODE, 0.0)
        program = prepare_tool_program(code) if tool else code
        started = time.perf_counter()
        result = self.pool.run(program, query=self.query)
        seconds = time.perf_counter() - started
        with self._lock:
            self.seconds += seconds
        error_class, value = classify_result(result, gold, variable=self.variable)
        texts = getattr(result, "texts", None) or {}
        error = getattr(result, "error", None)
        return Execution(
            status=str(result.status),
            value=value,
            text=texts.get(self.variable),
            error_class=error_class,
            seconds=seconds,
            error=str(error) if error else None,
        )


@dataclass
class Attempt:
    """One generation inside an episode and what the protocol did with it.

    ``action`` names the branch taken: ``executed``, ``tool_call``,
    ``bad_tool_call``, ``no_answer``, ``empty``, ``duplicate``, ``overflow``.
    ``events`` lists what followed (``feedback``, ``reset``, ``reminder``,
    ``shake``, ``end_try``, ``give_up``...).
    """

    index: int
    text: str
    tokens: int
    gen_seconds: float
    temperature: float
    action: str = "executed"
    program: str | None = None
    status: str = "no_code"
    value: float | None = None
    result_text: str | None = None
    error_class: str | None = str(ErrorClass.NO_CODE)  # None: not run
    prolog_seconds: float = 0.0
    try_index: int = 0
    events: list[str] = field(default_factory=list)

    def record(self, execution: Execution) -> None:
        """Store an execution's result on this attempt."""
        self.status = execution.status
        self.value = execution.value
        self.result_text = execution.text
        self.error_class = str(execution.error_class)
        self.prolog_seconds += execution.seconds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Outcome:
    """The end of an episode: the prediction and every attempt that led to it.

    ``success_attempt`` is the 1-based number of the attempt whose program gave the
    prediction (``None`` when no program gave a number).
    """

    prediction: float | None
    program: str | None
    correct: bool
    attempts: list[Attempt]
    success_attempt: int | None
    stop_reason: str
    tries: int = 1

    @property
    def executed(self) -> bool:
        return self.prediction is not None


@dataclass
class Request:
    """A generation an episode needs next."""

    prompt: str | Chat
    params: SamplingParams


class Episode(ABC):
    """One question's run through a protocol, as a state machine."""

    def __init__(self, question: Question, executor: Executor) -> None:
        self.question = question
        self.executor = executor
        self.attempts: list[Attempt] = []
        self.outcome: Outcome | None = None

    @property
    def done(self) -> bool:
        return self.outcome is not None

    @abstractmethod
    def request(self) -> Request:
        """Return the next generation to make; only valid while not ``done``."""

    @abstractmethod
    def feed(self, generations: Sequence[Generation]) -> None:
        """Consume the ``request().params.n`` generations made for the last
        :meth:`request`."""

    def _new_attempt(self, generation: Generation, temperature: float) -> Attempt:
        attempt = Attempt(
            index=len(self.attempts) + 1,
            text=generation.text,
            tokens=generation.tokens,
            gen_seconds=generation.seconds,
            temperature=temperature,
        )
        self.attempts.append(attempt)
        return attempt

    def _execute(self, attempt: Attempt, tool: bool = False) -> Execution:
        attempt.program = extract_answer(attempt.text)
        execution = self.executor.run(attempt.program, self.question.gold, tool=tool)
        attempt.record(execution)
        return execution

    def _finish(
        self,
        stop_reason: str,
        winner: Attempt | None = None,
        tries: int = 1,
    ) -> None:
        correct = winner is not None and winner.error_class == str(ErrorClass.CORRECT)
        self.outcome = Outcome(
            prediction=winner.value if winner is not None else None,
            program=winner.program if winner is not None else None,
            correct=correct,
            attempts=self.attempts,
            success_attempt=winner.index if winner is not None else None,
            stop_reason=stop_reason,
            tries=tries,
        )


class Protocol(ABC):
    """An inference protocol: how attempts are sampled, checked and repeated."""

    name: str = "protocol"

    @abstractmethod
    def start(self, question: Question, executor: Executor) -> Episode:
        """Create the episode that answers ``question``."""

    def config(self) -> dict[str, Any]:
        """Return the settings that define this protocol, for logs."""
        return {"name": self.name}


@dataclass
class DriverTimings:
    """Wall time of the two phases of :func:`run_episodes`, in seconds."""

    generate: float = 0.0  # backend calls
    feed: float = 0.0  # consuming generations: Prolog runs and bookkeeping


def run_episodes(
    episodes: Sequence[Episode],
    generator: Generator,
    on_done: Callable[[Episode], None] | None = None,
    max_batch: int | None = None,
    workers: int = 1,
    timings: DriverTimings | None = None,
) -> list[Outcome]:
    """Drive episodes to completion, batching their requests.

    Each round collects the pending request of every active episode, groups the
    requests by sampling settings, generates each group with one backend call
    (split into chunks of ``max_batch``) and feeds the results back. Feeding runs
    the programs, so with ``workers > 1`` the episodes of a chunk are fed from that
    many threads (match it to the Prolog pool size).

    Args:
        episodes: episodes to run.
        generator: the backend.
        on_done: called once per finished episode, from the calling thread.
        max_batch: maximum prompts per backend call; all at once when ``None``.
        workers: threads that feed episodes at the same time.
        timings: accumulates the wall time of generation and feeding.

    Returns:
        The outcomes, in episode order.
    """
    timings = timings if timings is not None else DriverTimings()
    for episode in episodes:
        if episode.done and on_done is not None:
            on_done(episode)
    active = [e for e in episodes if not e.done]
    threads = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        while active:
            groups: dict[SamplingParams, list[tuple[Episode, Request]]] = {}
            for episode in active:
                request = episode.request()
                groups.setdefault(request.params, []).append((episode, request))
            for params, items in groups.items():
                for chunk in _chunks(items, max_batch or len(items)):
                    _generate_and_feed(chunk, params, generator, threads, timings)
                    for episode, _ in chunk:
                        if episode.done and on_done is not None:
                            on_done(episode)
            active = [e for e in active if not e.done]
    finally:
        if threads is not None:
            threads.shutdown()
    return [e.outcome for e in episodes]  # type: ignore[misc]


def _generate_and_feed(
    chunk: list[tuple[Episode, Request]],
    params: SamplingParams,
    generator: Generator,
    threads: ThreadPoolExecutor | None,
    timings: DriverTimings,
) -> None:
    started = time.perf_counter()
    generations = generator.generate([request.prompt for _, request in chunk], params)
    timings.generate += time.perf_counter() - started
    if len(generations) != len(chunk) * params.n:
        raise RuntimeError(
            f"{generator.name} returned {len(generations)} generations for "
            f"{len(chunk)} prompts with n={params.n}"
        )
    started = time.perf_counter()
    slices = [generations[i * params.n : (i + 1) * params.n] for i in range(len(chunk))]
    if threads is None or len(chunk) == 1:
        for (episode, _), own in zip(chunk, slices, strict=True):
            episode.feed(own)
    else:
        futures = [
            threads.submit(episode.feed, own)
            for (episode, _), own in zip(chunk, slices, strict=True)
        ]
        for future in futures:
            future.result()
    timings.feed += time.perf_counter() - started


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
