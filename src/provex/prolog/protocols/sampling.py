"""Sampling protocols: one sample, and best-of-N with Prolog as the verifier.

- ``single``: one sample per question, scored as it is.
- ``best-of-n`` with ``selection="first-numeric"`` (the published rule): draw
  independent samples of the same prompt, with no feedback, until one program
  yields a number, and score that one. When all N fail the question is wrong.
- ``best-of-n`` with ``selection="majority"``: draw all N samples and answer with the
  most frequent number among the executed programs (ties go to the value that
  appeared first). This is an extension; no gold label is used in either rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from provex.prolog.generation import Chat, Generation, SamplingParams
from provex.prolog.protocols.base import (
    Episode,
    Executor,
    Protocol,
    Question,
    Request,
)

Selection = Literal["first-numeric", "majority"]
SELECTIONS: tuple[str, ...] = ("first-numeric", "majority")


def build_chat(
    system_prompt: str,
    user: str,
    few_shot: Sequence[tuple[str, str]] = (),
    separator: str = "\n",
) -> Chat:
    """Return the ``[system, (user, assistant)*, user]`` chat for one question."""
    messages = [{"role": "system", "content": system_prompt}]
    for shot_user, shot_answer in few_shot:
        messages.append({"role": "user", "content": shot_user})
        messages.append({"role": "assistant", "content": shot_answer})
    messages.append({"role": "user", "content": user})
    return Chat(messages, separator=separator)


class _SamplingEpisode(Episode):
    def __init__(
        self, question: Question, executor: Executor, protocol: BestOfN
    ) -> None:
        super().__init__(question, executor)
        self.protocol = protocol
        self.chat = build_chat(protocol.system_prompt, question.user, protocol.few_shot)

    def request(self) -> Request:
        params = self.protocol.params
        if self.protocol.selection == "majority":
            params = params.with_(n=self.protocol.n)
        elif params.seed is not None:
            # A fixed seed would repeat the same sample; attempt k uses seed + k.
            params = params.with_(seed=params.seed + len(self.attempts))
        return Request(self.chat, params)

    def feed(self, generations: Sequence[Generation]) -> None:
        if self.protocol.selection == "majority":
            self._feed_majority(generations)
            return
        (generation,) = generations
        attempt = self._new_attempt(generation, self.protocol.params.temperature)
        execution = self._execute(attempt)
        if execution.numeric:
            self._finish("numeric", attempt)
        elif len(self.attempts) >= self.protocol.n:
            attempt.events.append("give_up")
            self._finish("attempts_exhausted")

    def _feed_majority(self, generations: Sequence[Generation]) -> None:
        votes: dict[float, list[int]] = {}
        for generation in generations:
            attempt = self._new_attempt(generation, self.protocol.params.temperature)
            execution = self._execute(attempt)
            if execution.numeric:
                key = round(float(execution.value), 6)
                votes.setdefault(key, []).append(attempt.index)
        if not votes:
            self._finish("no_numeric")
            return
        # max() keeps the first maximum, and dicts keep insertion order, so ties go
        # to the value that appeared first.
        best = max(votes.values(), key=len)
        winner = self.attempts[best[0] - 1]
        winner.events.append(f"votes={len(best)}")
        self._finish("majority", winner)


class BestOfN(Protocol):
    """Up to ``n`` independent samples of the same prompt, verified by Prolog.

    Args:
        system_prompt: the system message.
        n: most samples per question (20 in the published runs).
        selection: ``first-numeric`` or ``majority`` (see the module docstring).
        params: sampling settings; ``n`` inside them is ignored.
        few_shot: worked ``(user, assistant)`` examples put before the question.
    """

    name = "best-of-n"

    def __init__(
        self,
        system_prompt: str,
        n: int = 20,
        selection: Selection = "first-numeric",
        params: SamplingParams | None = None,
        few_shot: Sequence[tuple[str, str]] = (),
    ) -> None:
        if n < 1:
            raise ValueError(f"best-of-n needs n >= 1, got {n}")
        if selection not in SELECTIONS:
            raise ValueError(
                f"unknown selection {selection!r}; use one of {', '.join(SELECTIONS)}"
            )
        self.system_prompt = system_prompt
        self.n = n
        self.selection = selection
        self.params = (params or SamplingParams()).with_(n=1)
        self.few_shot = list(few_shot)

    def start(self, question: Question, executor: Executor) -> Episode:
        return _SamplingEpisode(question, executor, self)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n": self.n,
            "selection": self.selection,
            "params": _params_dict(self.params),
            "few_shot": len(self.few_shot),
        }


class Single(BestOfN):
    """One sample per question."""

    name = "single"

    def __init__(
        self,
        system_prompt: str,
        params: SamplingParams | None = None,
        few_shot: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(system_prompt, n=1, params=params, few_shot=few_shot)


def _params_dict(params: SamplingParams) -> dict[str, Any]:
    return {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens,
        "stop": list(params.stop),
        "seed": params.seed,
    }
