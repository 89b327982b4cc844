"""A minimal OpenAI-compatible HTTP server in front of any :class:`Generator`.

It serves ``POST /v1/completions`` and ``POST /v1/chat/completions`` with the
sampling fields the HTTP backend sends (``temperature``, ``top_p``, ``max_tokens``,
``stop``, ``n``, ``seed``, ``include_stop_str_in_output``) and ``GET /v1/models``.
It exists to exercise the HTTP backend end to end on loopback (tests, benchmarks)
and to share one loaded model between processes. It has no authentication, so bind
it to 127.0.0.1 only.

Example:
    >>> from provex.prolog.generation import ScriptedGenerator
    >>> with OpenAIServer(ScriptedGenerator(["hi"], repeat_last=True)) as server:
    ...     url = server.base_url  # http://127.0.0.1:<port>/v1
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from provex.prolog.generation import Chat, Generator, SamplingParams

logger = logging.getLogger(__name__)

# (path, body, headers) -> None to serve normally, or (status, payload) to reply with.
RequestHook = Callable[[str, dict[str, Any], dict[str, str]], tuple[int, dict] | None]


class OpenAIServer:
    """Serve a generator over HTTP on a background thread.

    Args:
        generator: the model backend that answers requests.
        model_name: the name reported by ``/v1/models``.
        host: interface to bind; keep the loopback default.
        port: TCP port; 0 picks a free one.
        hook: called before each request; it may return a reply to send instead
            (for example an error, to test client retries).
    """

    def __init__(
        self,
        generator: Generator,
        model_name: str = "provex",
        host: str = "127.0.0.1",
        port: int = 0,
        hook: RequestHook | None = None,
    ) -> None:
        self.generator = generator
        self.model_name = model_name
        self.hook = hook
        self.requests: list[dict[str, Any]] = []  # bodies received, in order
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> OpenAIServer:
        """Start serving on a daemon thread."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        logger.info("serving %s at %s", self.model_name, self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:  # shutdown() blocks unless serve_forever runs
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()
        logger.info("stopped serving at %s", self.base_url)

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def complete(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Answer one completion request body; raises ``ValueError`` on bad input."""
        stop = body.get("stop") or []
        params = SamplingParams(
            temperature=float(body.get("temperature", 1.0)),
            top_p=float(body.get("top_p", 1.0)),
            max_tokens=int(body.get("max_tokens", 16)),
            stop=(stop,) if isinstance(stop, str) else tuple(stop),
            n=int(body.get("n", 1)),
            seed=body.get("seed"),
        )
        chat = path.endswith("/chat/completions")
        if chat:
            prompt: str | Chat = Chat(list(body["messages"]))
        else:
            prompt = body["prompt"]
            if not isinstance(prompt, str):
                raise ValueError("only a single string 'prompt' is supported")
        with self._lock:
            generations = self.generator.generate([prompt], params)
        keep_stop = bool(body.get("include_stop_str_in_output", False))
        choices = []
        for index, generation in enumerate(generations):
            text = generation.text
            if not keep_stop:
                for s in params.stop:
                    if s and text.endswith(s):
                        text = text[: -len(s)]
                        break
            finish = generation.finish_reason
            if chat:
                message = {"role": "assistant", "content": text}
                choices.append(
                    {"index": index, "message": message, "finish_reason": finish}
                )
            else:
                choices.append({"index": index, "text": text, "finish_reason": finish})
        tokens = sum(g.tokens for g in generations)
        return {
            "id": f"cmpl-{time.time_ns()}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": choices,
            "usage": {"completion_tokens": tokens},
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                logger.debug("%s " + format, self.address_string(), *args)

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                if self.path.rstrip("/") == "/v1/models":
                    model = {"id": server.model_name, "object": "model"}
                    self._reply(200, {"object": "list", "data": [model]})
                else:
                    self._reply(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers.get("Content-Length", 0))
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError as err:
                    self._reply(400, {"error": {"message": f"invalid JSON: {err}"}})
                    return
                server.requests.append(body)
                if server.hook is not None:
                    override = server.hook(self.path, body, dict(self.headers))
                    if override is not None:
                        self._reply(*override)
                        return
                if self.path not in ("/v1/completions", "/v1/chat/completions"):
                    self._reply(404, {"error": {"message": f"no route {self.path}"}})
                    return
                try:
                    self._reply(200, server.complete(self.path, body))
                except (KeyError, ValueError, TypeError) as err:
                    logger.warning("bad request to %s: %s", self.path, err)
                    self._reply(400, {"error": {"message": f"bad request: {err}"}})

        return Handler
