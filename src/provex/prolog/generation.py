"""Text generation backends behind one interface: transformers, vLLM and HTTP.

Every protocol asks a :class:`Generator` for completions of a batch of prompts with a
:class:`SamplingParams`, and gets one :class:`Generation` per sample back. A prompt is
either raw text or a :class:`Chat` (a list of role/content messages). Text backends
flatten a chat in one of two styles:

- ``plain``: ``"(SYSTEM) ..."``, ``"(USER) ..."`` blocks joined by the chat's
  separator, with no assistant cue. This is how the published Prolog-as-a-tool
  evaluation prompted its models, so it is the default.
- ``chat``: the tokenizer's chat template with the generation prompt appended.

The OpenAI-compatible backend in ``chat`` mode sends the messages as they are.

Example:
    >>> gen = TransformersGenerator.from_source("tiny-random-qwen2")
    >>> outs = gen.generate(["(USER) 1+1?"], SamplingParams(max_tokens=8))
    >>> len(outs)
    1
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import threading
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

ANSWER_STOP = "</answer>"
# Serialises tokenizer calls of backends that share a tokenizer across threads.
_TOKENIZER_LOCK = threading.Lock()
PromptStyle = Literal["plain", "chat"]


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings shared by every backend.

    The defaults are those of the published evaluation: temperature 0.2, top-p 0.95,
    at most 1024 new tokens, stop after ``</answer>`` (the stop string stays in the
    output). A temperature of 0 means greedy decoding.
    """

    temperature: float = 0.2
    top_p: float = 0.95
    max_tokens: int = 1024  # new tokens per sample
    stop: tuple[str, ...] = (ANSWER_STOP,)
    n: int = 1  # samples per prompt
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        object.__setattr__(self, "stop", tuple(self.stop))

    def with_(self, **changes: Any) -> SamplingParams:
        """Return a copy with some fields changed."""
        return replace(self, **changes)


@dataclass
class Generation:
    """One sampled completion.

    ``seconds`` is the wall time of the backend call that produced it divided by the
    number of samples in that call, so summing it over a run gives the generation
    wall time.
    """

    text: str
    tokens: int  # completion tokens
    seconds: float
    finish_reason: str = "stop"  # "stop" (stop string or end of sequence) or "length"


@dataclass
class Chat:
    """A conversation to complete; ``separator`` joins blocks in the plain style."""

    messages: list[dict[str, str]]
    separator: str = "\n\n"


Prompt = str | Chat


def render_plain(chat: Chat) -> str:
    """Flatten a chat as ``(ROLE) content`` blocks without an assistant cue.

    Example:
        >>> render_plain(Chat([{"role": "system", "content": "S"},
        ...                    {"role": "user", "content": "Q"}], separator="\\n"))
        '(SYSTEM) S\\n(USER) Q'
    """
    blocks = [f"({m['role'].upper()}) {m['content']}" for m in chat.messages]
    return chat.separator.join(blocks)


def render_chat_template(tokenizer: PreTrainedTokenizerBase, chat: Chat) -> str:
    """Render a chat with the tokenizer's template and the generation prompt.

    When the template raises an error on a role (some have no ``tool`` or
    ``system`` role), every message other than user and assistant becomes a user
    turn prefixed with its role.
    """
    try:
        return tokenizer.apply_chat_template(
            chat.messages, tokenize=False, add_generation_prompt=True
        )
    except Exception as err:  # noqa: BLE001 (templates raise arbitrary errors)
        logger.debug("chat template rejected the roles (%s); merging them", err)
    merged: list[dict[str, str]] = []
    for message in chat.messages:
        role, content = message["role"], message["content"]
        if role not in ("user", "assistant"):
            role, content = "user", f"({message['role'].upper()}) {content}"
        if merged and merged[-1]["role"] == role:
            merged[-1] = {
                "role": role,
                "content": merged[-1]["content"] + "\n\n" + content,
            }
        else:
            merged.append({"role": role, "content": content})
    return tokenizer.apply_chat_template(
        merged, tokenize=False, add_generation_prompt=True
    )


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` after the earliest stop string, keeping the stop string.

    Returns:
        ``(text, stopped)``; ``stopped`` is True when a stop string was found.

    Example:
        >>> truncate_at_stop("a</answer>b", ["</answer>"])
        ('a</answer>', True)
    """
    best = -1
    best_stop = ""
    for s in stop:
        if not s:
            continue
        i = text.find(s)
        if i != -1 and (best == -1 or i < best):
            best, best_stop = i, s
    if best == -1:
        return text, False
    return text[: best + len(best_stop)], True


class Generator(ABC):
    """A model that completes prompts.

    Subclasses implement :meth:`_generate_texts` on rendered prompts (or
    :meth:`generate` directly) and :meth:`count_tokens`.
    """

    name: str = "generator"
    prompt_style: PromptStyle = "plain"

    def render(self, prompt: Prompt) -> str:
        """Flatten a prompt to the text the model is conditioned on."""
        if isinstance(prompt, str):
            return prompt
        if self.prompt_style == "chat":
            tokenizer = self._chat_tokenizer()
            if tokenizer is None:
                raise ValueError(
                    f"{self.name} has no tokenizer with a chat template; use the "
                    "plain prompt style"
                )
            return render_chat_template(tokenizer, prompt)
        return render_plain(prompt)

    def _chat_tokenizer(self) -> PreTrainedTokenizerBase | None:
        return None

    @abstractmethod
    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams
    ) -> list[Generation]:
        """Sample ``params.n`` completions for each prompt.

        Returns:
            ``len(prompts) * params.n`` generations, prompt-major: the ``n`` samples
            of prompt 0 first.
        """

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Return the number of tokens ``text`` takes for this model."""

    def count_prompt_tokens(self, prompt: Prompt) -> int:
        """Return the number of tokens of a rendered prompt."""
        return self.count_tokens(self.render(prompt))

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release resources held by the backend."""


class TransformersGenerator(Generator):
    """Batched ``model.generate`` on CPU or GPU, optionally with a PEFT adapter.

    Args:
        model: a causal LM (a ``PeftModel`` works too).
        tokenizer: its tokenizer; padding is switched to the left for batching.
        batch_size: prompts per ``generate`` call.
        prompt_style: ``plain`` or ``chat`` (see the module docstring).
    """

    name = "transformers"

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        batch_size: int = 8,
        prompt_style: PromptStyle = "plain",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.prompt_style = prompt_style
        self._token_lock = threading.Lock()
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    @classmethod
    def from_source(
        cls,
        source: str | Path,
        adapter: str | Path | None = None,
        dtype: str = "auto",
        device: str | None = None,
        **kwargs: Any,
    ) -> TransformersGenerator:
        """Load a model with :func:`provex.models.load_causal_lm` and wrap it."""
        from provex.models import load_causal_lm

        model, tokenizer = load_causal_lm(
            source, dtype=dtype, device=device, adapter=adapter
        )
        return cls(model, tokenizer, **kwargs)

    def _chat_tokenizer(self) -> PreTrainedTokenizerBase | None:
        return self.tokenizer if self.tokenizer.chat_template else None

    def count_tokens(self, text: str) -> int:
        # Fast tokenizers raise "Already borrowed" when called from two threads at
        # once, and protocols count tokens while programs run in threads.
        with self._token_lock:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams
    ) -> list[Generation]:
        texts = [self.render(p) for p in prompts]
        out: list[Generation] = []
        for start in range(0, len(texts), self.batch_size):
            out.extend(
                self._generate_batch(texts[start : start + self.batch_size], params)
            )
        return out

    def _generate_batch(
        self, texts: list[str], params: SamplingParams
    ) -> list[Generation]:
        import torch

        device = next(self.model.parameters()).device
        # Plain text gets the tokenizer's BOS token (Gemma needs it); chat-template
        # text already starts with it.
        bos = self.tokenizer.bos_token
        add_special = not (bos and all(t.startswith(bos) for t in texts))
        enc = self.tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=add_special
        ).to(device)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        if params.n > 1:
            enc = {k: v.repeat_interleave(params.n, dim=0) for k, v in enc.items()}
        kwargs: dict[str, Any] = dict(
            max_new_tokens=params.max_tokens,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if params.temperature > 0:
            # Sampling runs as a logits processor under greedy decoding. It draws from
            # the same distribution as transformers' temperature and top-p warpers
            # without sorting the vocabulary at every step (provex.prolog.nucleus).
            from transformers import LogitsProcessorList

            from provex.prolog.nucleus import NucleusSampler

            sampler = NucleusSampler(params.temperature, params.top_p)
            kwargs.update(logits_processor=LogitsProcessorList([sampler]))
        if params.stop:
            # NOTE: transformers matches stop strings against the end of prompt plus
            # output, so a prompt ending in the start of a stop string (say "</ans")
            # can stop a row early; the text is then returned without the stop.
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        started = time.perf_counter()
        with torch.inference_mode():
            ids = self.model.generate(**enc, **kwargs)
        seconds = (time.perf_counter() - started) / max(1, len(texts) * params.n)
        new_ids = ids[:, enc["input_ids"].shape[1] :]
        stop_ids = {self.tokenizer.pad_token_id, self.tokenizer.eos_token_id}
        result = []
        for row in new_ids.tolist():
            used = len(row)
            for i, token in enumerate(row):
                if token in stop_ids:
                    used = i
                    break
            raw = self.tokenizer.decode(row[:used], skip_special_tokens=True)
            text, stopped = truncate_at_stop(raw, params.stop)
            hit_limit = used >= params.max_tokens and not stopped
            result.append(
                Generation(
                    text=text,
                    tokens=used,
                    seconds=seconds,
                    finish_reason="length" if hit_limit else "stop",
                )
            )
        return result


class VLLMGenerator(Generator):
    """vLLM offline engine (GPU); LoRA adapters through ``LoRARequest``.

    Args:
        source: hub id, local directory or prepared package name.
        adapter: a PEFT LoRA adapter directory.
        prompt_style: ``plain`` or ``chat``.
        engine_kwargs: passed to ``vllm.LLM`` (``gpu_memory_utilization``,
            ``max_model_len``, ``dtype``...).
    """

    name = "vllm"
    # NOTE: the test suite does not run this backend (it needs a GPU and vllm); the
    # calls follow the documented ``vllm.LLM.generate`` API.

    def __init__(
        self,
        source: str | Path,
        adapter: str | Path | None = None,
        prompt_style: PromptStyle = "plain",
        max_lora_rank: int = 64,
        **engine_kwargs: Any,
    ) -> None:
        try:
            import vllm
        except ImportError as err:
            raise ImportError(
                "the vllm backend needs the vllm package (GPU only): "
                "pip install 'provex[gpu]', or use --backend transformers"
            ) from err
        from provex.models import resolve_source

        self._vllm = vllm
        self.prompt_style = prompt_style
        if adapter is not None:
            engine_kwargs.setdefault("enable_lora", True)
            engine_kwargs.setdefault("max_lora_rank", max_lora_rank)
        self.llm = vllm.LLM(model=resolve_source(source), **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.lora_request = None
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest("adapter", 1, str(Path(adapter).resolve()))

    def _chat_tokenizer(self) -> PreTrainedTokenizerBase | None:
        return self.tokenizer

    def count_tokens(self, text: str) -> int:
        with _TOKENIZER_LOCK:
            return len(self.tokenizer.encode(text, add_special_tokens=False))

    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams
    ) -> list[Generation]:
        texts = [self.render(p) for p in prompts]
        vparams = self._vllm.SamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            stop=list(params.stop),
            include_stop_str_in_output=True,
            seed=params.seed,
        )
        started = time.perf_counter()
        outputs = self.llm.generate(
            texts, vparams, lora_request=self.lora_request, use_tqdm=False
        )
        seconds = (time.perf_counter() - started) / max(1, len(texts) * params.n)
        return [
            Generation(
                text=c.text,
                tokens=len(c.token_ids),
                seconds=seconds,
                finish_reason="length" if c.finish_reason == "length" else "stop",
            )
            for out in outputs
            for c in out.outputs
        ]


class ScriptedGenerator(Generator):
    """Replays fixed completions; a stand-in for a model in tests and benchmarks.

    Args:
        script: completions handed out in order, or a function
            ``(prompt_text, params) -> completion``.
        repeat_last: once the list is used up, keep returning its last entry
            (otherwise an ``IndexError`` is raised).

    Every call is recorded in ``calls`` as ``(rendered prompt, params)``.

    Example:
        >>> gen = ScriptedGenerator(["<answer>solve(4).</answer>"])
        >>> gen.generate(["Q"], SamplingParams())[0].text
        '<answer>solve(4).</answer>'
    """

    name = "scripted"

    def __init__(
        self,
        script: Sequence[str] | Callable[[str, SamplingParams], str],
        repeat_last: bool = False,
        prompt_style: PromptStyle = "plain",
    ) -> None:
        self.script = script if callable(script) else list(script)
        self.repeat_last = repeat_last
        self.prompt_style = prompt_style
        self.calls: list[tuple[str, SamplingParams]] = []
        self.batches: list[int] = []  # prompts per generate() call
        self._next = 0

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _take(self, prompt: str, params: SamplingParams) -> str:
        if callable(self.script):
            return self.script(prompt, params)
        if self._next >= len(self.script):
            if self.repeat_last and self.script:
                return self.script[-1]
            raise IndexError(
                f"scripted generator ran out after {len(self.script)} completions"
            )
        text = self.script[self._next]
        self._next += 1
        return text

    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams
    ) -> list[Generation]:
        self.batches.append(len(prompts))
        out = []
        for prompt in prompts:
            rendered = self.render(prompt)
            for _ in range(params.n):
                self.calls.append((rendered, params))
                text, _ = truncate_at_stop(self._take(rendered, params), params.stop)
                out.append(Generation(text, self.count_tokens(text), 0.0))
        return out


class HTTPError(RuntimeError):
    """An OpenAI-compatible server rejected a request or could not be reached."""


@dataclass
class OpenAIGenerator(Generator):
    """Any OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp, Ollama).

    Args:
        base_url: server root including ``/v1``, e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name the server expects.
        mode: ``completions`` (send the rendered text to ``/completions``) or ``chat``
            (send messages to ``/chat/completions``).
        api_key_env: environment variable that contains the API key; unset or empty
            means no ``Authorization`` header.
        timeout: seconds to wait for one response.
        retries: extra tries after a connection error, a timeout, HTTP 429 or 5xx.
        backoff: seconds before the first retry, doubled on each further one.
        concurrency: requests in flight at once.
        tokenizer: used to count tokens; without one a token is estimated as four
            characters.
        include_stop_str: ask the server to keep the stop string (vLLM's
            ``include_stop_str_in_output``); servers that ignore it get the stop
            string added back when the completion ended on it.
    """

    base_url: str
    model: str
    mode: Literal["completions", "chat"] = "completions"
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 120.0
    retries: int = 3
    backoff: float = 1.0
    concurrency: int = 8
    tokenizer: Any = None
    prompt_style: PromptStyle = "plain"
    include_stop_str: bool = True
    name: str = field(default="openai", init=False)

    def __post_init__(self) -> None:
        if self.mode not in ("completions", "chat"):
            raise ValueError(f"mode must be 'completions' or 'chat', got {self.mode!r}")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"base_url must start with http:// or https://, got {self.base_url!r}"
            )
        self.base_url = self.base_url.rstrip("/")

    def _chat_tokenizer(self) -> PreTrainedTokenizerBase | None:
        if self.tokenizer is not None and getattr(
            self.tokenizer, "chat_template", None
        ):
            return self.tokenizer
        return None

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is not None:
            with _TOKENIZER_LOCK:
                ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            return len(ids)
        return math.ceil(len(text) / 4)

    def count_prompt_tokens(self, prompt: Prompt) -> int:
        if self.mode == "chat" and isinstance(prompt, Chat):
            return self.count_tokens(render_plain(prompt))
        return super().count_prompt_tokens(prompt)

    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams
    ) -> list[Generation]:
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            groups = list(pool.map(lambda p: self._complete(p, params), prompts))
        return [g for group in groups for g in group]

    def _complete(self, prompt: Prompt, params: SamplingParams) -> list[Generation]:
        body: dict[str, Any] = {
            "model": self.model,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "n": params.n,
        }
        if params.stop:
            body["stop"] = list(params.stop)
            if self.include_stop_str:
                body["include_stop_str_in_output"] = True
        if params.seed is not None:
            body["seed"] = params.seed
        if self.mode == "chat":
            messages = (
                prompt.messages
                if isinstance(prompt, Chat)
                else [{"role": "user", "content": prompt}]
            )
            body["messages"] = messages
            path = "/chat/completions"
        else:
            body["prompt"] = self.render(prompt)
            path = "/completions"
        started = time.perf_counter()
        reply = self._post(path, body)
        seconds = (time.perf_counter() - started) / params.n
        choices = sorted(reply.get("choices", []), key=lambda c: c.get("index", 0))
        if len(choices) != params.n:
            raise HTTPError(
                f"{self.base_url}{path} returned {len(choices)} choices, expected "
                f"{params.n}; the server may not support n > 1"
            )
        usage = reply.get("usage") or {}
        out = []
        for choice in choices:
            if self.mode == "chat":
                text = (choice.get("message") or {}).get("content") or ""
            else:
                text = choice.get("text") or ""
            finish = choice.get("finish_reason") or "stop"
            text = _restore_stop(text, finish, params.stop)
            tokens = (
                usage.get("completion_tokens", 0) // params.n
                if usage.get("completion_tokens")
                else self.count_tokens(text)
            )
            out.append(
                Generation(
                    text=text,
                    tokens=int(tokens),
                    seconds=seconds,
                    finish_reason="length" if finish == "length" else "stop",
                )
            )
        return out

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.base_url + path
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        delay = self.backoff
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(url, data=data, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read().decode())
            except urllib.error.HTTPError as err:
                detail = err.read().decode(errors="replace")[:500]
                retryable = err.code == 429 or err.code >= 500
                if not retryable or attempt == self.retries:
                    raise HTTPError(
                        f"POST {url} failed with HTTP {err.code}: {detail}"
                    ) from err
                reason = f"HTTP {err.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                if attempt == self.retries:
                    raise HTTPError(
                        f"POST {url} failed after {self.retries + 1} tries: {err}; "
                        "check --base-url and that the server is running"
                    ) from err
                reason = str(err)
            wait = delay * (1 + 0.1 * random.random())
            logger.warning(
                "POST %s failed (%s); retry %d/%d in %.1f s",
                url,
                reason,
                attempt + 1,
                self.retries,
                wait,
            )
            time.sleep(wait)
            delay *= 2
        raise AssertionError("unreachable")


def _restore_stop(text: str, finish_reason: str, stop: Sequence[str]) -> str:
    """Add back a stop string that a server removed from a completion."""
    if finish_reason != "stop" or not stop or any(text.endswith(s) for s in stop):
        return text
    if ANSWER_STOP in stop and text.rfind("<answer>") > text.rfind(ANSWER_STOP):
        return text + ANSWER_STOP
    if len(stop) == 1 and ANSWER_STOP not in stop:
        return text + stop[0]
    return text


def build_generator(
    backend: str,
    model: str,
    *,
    adapter: str | Path | None = None,
    base_url: str | None = None,
    api_mode: str = "completions",
    api_key_env: str = "OPENAI_API_KEY",
    tokenizer: str | None = None,
    prompt_style: PromptStyle = "plain",
    batch_size: int = 8,
    dtype: str = "auto",
    device: str | None = None,
    timeout: float = 120.0,
    retries: int = 3,
) -> Generator:
    """Create a generator by backend name: ``transformers``, ``vllm`` or ``openai``.

    Args:
        backend: which backend to use.
        model: hub id, local directory, prepared package name or, for ``openai``,
            the served model name.
        adapter: PEFT LoRA adapter directory (transformers and vLLM).
        base_url: server URL for ``openai``.
        tokenizer: tokenizer source for ``openai`` token counts.
    """
    if backend == "transformers":
        return TransformersGenerator.from_source(
            model,
            adapter=adapter,
            dtype=dtype,
            device=device,
            batch_size=batch_size,
            prompt_style=prompt_style,
        )
    if backend == "vllm":
        kwargs: dict[str, Any] = {}
        if dtype != "auto":
            kwargs["dtype"] = dtype
        return VLLMGenerator(
            model, adapter=adapter, prompt_style=prompt_style, **kwargs
        )
    if backend == "openai":
        if not base_url:
            raise ValueError(
                "the openai backend needs --base-url, e.g. http://127.0.0.1:8000/v1"
            )
        if adapter is not None:
            raise ValueError(
                "--adapter is not used by the openai backend; load the adapter on the "
                "server and pass its served name as --model"
            )
        tok = None
        if tokenizer is not None:
            from provex.models import load_tokenizer

            tok = load_tokenizer(tokenizer)
        return OpenAIGenerator(
            base_url=base_url,
            model=model,
            mode=api_mode,  # type: ignore[arg-type]
            api_key_env=api_key_env,
            tokenizer=tok,
            prompt_style=prompt_style,
            timeout=timeout,
            retries=retries,
        )
    raise ValueError(f"unknown backend {backend!r}; use transformers, vllm or openai")
