"""A thread-safe pool of persistent, sandboxed ``swipl`` worker processes.

Each worker runs ``runner.pl``, which serves one JSON request per line. Python
adds the operating-system layer of the sandbox: every worker is started in its
own session (so ``killpg`` reaches all of its children) through ``prlimit``
with an address-space limit, a file-size limit and no core dumps, in an empty
temporary working directory, with standard input and output tied to
``/dev/null``. A watchdog kills and restarts a worker that does not reply
within the hard wall-clock limit, because a program that catches every
exception also swallows Prolog's own time limit.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import queue
import re
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provex.prolog.engine.terms import decode_term

logger = logging.getLogger(__name__)

RUNNER = Path(__file__).with_name("runner.pl")

STATUSES = (
    "ok",
    "fail",
    "syntax_error",
    "undefined_predicate",
    "unsafe",
    "timeout",
    "inference_limit",
    "resource_error",
    "error",
    "crashed",
)

# Programs longer than this are rejected before they reach a worker: loading
# megabytes of clauses would take longer than any sensible hard time limit.
DEFAULT_MAX_PROGRAM_CHARS = 1_000_000


@dataclass
class PrologResult:
    """The outcome of running one program and query.

    Attributes:
        status: one of ``STATUSES``.
        bindings: the query's named variables mapped to Python values
            (``int``, ``float``, ``Fraction``, ``str``, ``list``, or the classes
            of ``provex.prolog.engine.terms``). Empty unless ``status == "ok"``.
        texts: each binding as ``write/1`` prints it, e.g. ``"15r2"``.
        output: what the program wrote to standard output: first its
            directives and ``initialization/1`` goals while loading, then the
            query.
        messages: warnings and errors printed while loading the program.
        elapsed: wall-clock seconds from sending the request to the reply.
        error: a description of the error, or ``None``.
        query_status: the status the query itself reached. It differs from
            ``status`` only when loading reported ``syntax_error``, ``error``
            (a directive raised an exception) or ``undefined_predicate`` (a
            directive called an undefined predicate). SWI-Prolog prints those
            and loads the rest of the file, so the query still runs, and its
            bindings and texts are filled in when it succeeds. This matches
            what a plain ``swipl`` run of the file prints.
    """

    status: str
    bindings: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    output: str = ""
    messages: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    error: str | None = None
    query_status: str | None = None

    def __post_init__(self) -> None:
        if self.query_status is None:
            self.query_status = self.status

    @property
    def ok(self) -> bool:
        """Whether the query succeeded."""
        return self.status == "ok"

    def value(self, name: str = "X") -> Any:
        """Return the binding of variable ``name``, or ``None`` when it is absent."""
        return self.bindings.get(name)

    def text(self, name: str = "X") -> str | None:
        """Return the ``write/1`` text of variable ``name``, or ``None``."""
        return self.texts.get(name)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict; bindings are given as their texts."""
        return {
            "status": self.status,
            "bindings": dict(self.texts),
            "output": self.output,
            "messages": list(self.messages),
            "elapsed": round(self.elapsed, 6),
            "error": self.error,
            "query_status": self.query_status,
        }


@dataclass
class ProgramStructure:
    """Counts taken by reading a program as Prolog terms, without running it.

    Attributes:
        predicates: top-level clauses (facts and rules, not directives) whose
            head is not ``solve/N``; every fact counts separately.
        constraints: ``{}/1`` subterms (CLP constraint blocks) in all terms.
        syntax_error: the first read error, or ``None``. Both counts are 0 then.
    """

    predicates: int = 0
    constraints: int = 0
    syntax_error: str | None = None

    @property
    def valid(self) -> bool:
        """Whether the program has at least one predicate and one constraint."""
        return self.predicates >= 1 and self.constraints >= 1


_STATE_LOCK = threading.Lock()
_STATE_PATH: list[str] = []


def _runner_command() -> list[str]:
    """Return the swipl arguments that start a runner, building a saved state once.

    A saved state starts in about 50 ms against about 250 ms for loading the
    runner and CLP libraries from source, which matters when workers restart.
    """
    with _STATE_LOCK:
        # Rebuilt when missing, e.g. after a cleaner emptied the temporary directory.
        if not _STATE_PATH or (_STATE_PATH[0] and not os.path.exists(_STATE_PATH[0])):
            _STATE_PATH[:] = [_build_state() or ""]
        state = _STATE_PATH[0]
    if state:
        return ["swipl", "-x", state, "--no-packs", "--no-tty"]
    return ["swipl", "--no-packs", "--no-tty", "-q", str(RUNNER)]


def _build_state() -> str | None:
    source = RUNNER.read_bytes()
    version = subprocess.run(
        ["swipl", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    digest = hashlib.sha256(source + version.encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"provex-prolog-{os.getuid()}"
    state = cache / f"runner-{digest}.state"
    if state.exists():
        return str(state)
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = cache / f"{state.name}.{os.getpid()}.partial"
    try:
        subprocess.run(
            ["swipl", "--no-packs", "-q", "-o", str(partial), "-c", str(RUNNER)],
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            cwd=cache,
            timeout=120,
        )
        os.replace(partial, state)
    except (subprocess.SubprocessError, OSError) as exc:
        logger.warning(
            "building the runner saved state failed, loading source: %s", exc
        )
        partial.unlink(missing_ok=True)
        return None
    logger.info("built runner saved state %s", state)
    # States of older runner versions are dropped after a day; a process still
    # using one rebuilds it from the current runner when it restarts a worker.
    for old in cache.glob("runner-*.state"):
        if old != state and time.time() - old.stat().st_mtime > 86400:
            old.unlink(missing_ok=True)
    return str(state)


class _Worker:
    """One ``swipl`` runner process and its two protocol pipes."""

    def __init__(self, index: int, workdir: str, memory_limit: int, stack_limit: int):
        self.index = index
        self.workdir = workdir
        self.memory_limit = memory_limit
        self.stack_limit = stack_limit
        self.process: subprocess.Popen[bytes] | None = None
        self.requests = 0
        self.restarts = 0
        self._buffer = b""
        self._start()

    def _start(self) -> None:
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        command = [*_runner_command(), "--", str(request_read), str(reply_write)]
        command.append(str(self.stack_limit))
        prlimit = shutil.which("prlimit")
        if prlimit:
            limits = [f"--as={self.memory_limit}", "--fsize=1048576", "--core=0"]
            command = [prlimit, *limits, "--", *command]
        else:  # NOTE: without prlimit the worker runs with no address-space limit.
            logger.warning("prlimit not found: workers start without memory limits")
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.workdir,
                pass_fds=(request_read, reply_write),
                start_new_session=True,
            )
        finally:
            os.close(request_read)
            os.close(reply_write)
        self._request_fd = request_write
        self._reply_fd = reply_read
        self._buffer = b""
        self.requests = 0
        logger.debug("worker %d started, pid %d", self.index, self.process.pid)

    def stop(self) -> None:
        """Kill the worker's whole process group and close its pipes."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for fd in (self._request_fd, self._reply_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.process = None

    def restart(self, reason: str) -> None:
        pid = self.process.pid if self.process else None
        logger.info("restarting worker %d (pid %s): %s", self.index, pid, reason)
        self.stop()
        self.restarts += 1
        self._start()

    def request(self, payload: dict[str, Any], hard_limit: float) -> dict[str, Any]:
        """Send one request and wait for its reply, at most ``hard_limit`` seconds."""
        deadline = time.monotonic() + hard_limit
        line = json.dumps(payload, ensure_ascii=False) + "\n"
        data = line.encode("utf-8", errors="replace")
        self.requests += 1
        try:
            self._send(data, deadline)
            reply_line = self._receive(deadline)
        except TimeoutError:
            self.restart(f"no reply within {hard_limit:.1f} s")
            return {"status": "timeout", "error": f"hard time limit of {hard_limit} s"}
        except (BrokenPipeError, EOFError, OSError) as exc:
            code = self._exit_code()
            self.restart(f"worker died ({exc!r}, exit code {code})")
            return {"status": "crashed", "error": f"worker died, exit code {code}"}
        try:
            reply = json.loads(reply_line)
        except json.JSONDecodeError as exc:
            self.restart(f"invalid reply {reply_line[:200]!r}")
            return {"status": "crashed", "error": f"invalid reply from worker: {exc}"}
        if reply.get("id") != payload["id"]:
            self.restart(f"reply id {reply.get('id')} for request {payload['id']}")
            return {"status": "crashed", "error": "reply did not match the request"}
        if reply.get("recycle"):
            self.restart("a limit interrupted loading")
        return reply

    def _exit_code(self) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            return None

    def _send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if _wait_for(self._request_fd, select.POLLOUT, remaining):
                written = os.write(self._request_fd, view[: 1 << 16])
                view = view[written:]

    def _receive(self, deadline: float) -> str:
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if not _wait_for(self._reply_fd, select.POLLIN, remaining):
                raise TimeoutError
            chunk = os.read(self._reply_fd, 1 << 16)
            if not chunk:
                raise EOFError("worker closed its reply pipe")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode("utf-8", errors="replace")


def _wait_for(fd: int, event: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``event`` (or a hang-up) on ``fd``.

    poll() rather than select(), because select() rejects descriptors above 1023,
    which a large training process can reach.
    """
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(max(0, math.ceil(timeout * 1000))))


def _close_workers(workers: list[_Worker], workdir: str) -> None:
    for worker in workers:
        worker.stop()
    shutil.rmtree(workdir, ignore_errors=True)


class PrologPool:
    """A pool of sandboxed SWI-Prolog workers, shared safely by many threads.

    Args:
        workers: number of ``swipl`` processes, which is also the number of
            programs run at the same time.
        time_limit: default wall-clock limit for loading a program and, again,
            for its query, in seconds (``call_with_time_limit/2``).
        inference_limit: default maximum logical inferences for one query.
        memory_limit: address-space limit of each worker process, in bytes.
        hard_time_limit: wall-clock seconds after which the watchdog kills a
            worker that has not replied. ``None`` means ``2 * time_limit + 1``;
            a given value is raised to at least ``2 * time_limit + 0.5``.
        stack_limit: Prolog stack limit of each worker, in bytes (the
            ``stack_limit`` flag: global, local and trail stacks together).
        max_program_chars: longer programs get ``resource_error`` without
            being sent to a worker.
        recycle_after: restart a worker after this many requests, which bounds
            slow memory growth. ``None`` never recycles.

    Example:
        >>> with PrologPool(workers=2) as pool:
        ...     pool.run("solve(X) :- X is 6*7.").value()
        42
    """

    def __init__(
        self,
        workers: int = 2,
        time_limit: float = 1.0,
        inference_limit: int = 10_000_000,
        memory_limit: int = 2 * 1024**3,
        hard_time_limit: float | None = None,
        stack_limit: int = 256 * 1024**2,
        max_program_chars: int = DEFAULT_MAX_PROGRAM_CHARS,
        recycle_after: int | None = 50_000,
    ):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if time_limit <= 0:
            raise ValueError(f"time_limit must be positive seconds, got {time_limit}")
        if shutil.which("swipl") is None:
            raise RuntimeError(
                "swipl not found on PATH; install SWI-Prolog (Debian: "
                "apt-get install swi-prolog-nox) or run `make install`"
            )
        self.time_limit = time_limit
        self.inference_limit = inference_limit
        self.memory_limit = memory_limit
        self.hard_time_limit = hard_time_limit
        self.max_program_chars = max_program_chars
        self.recycle_after = recycle_after
        self.workdir = tempfile.mkdtemp(prefix="provex-prolog-jail-")
        self._ids = itertools.count(1)
        self._closed = False
        self._workers = [
            _Worker(i, self.workdir, memory_limit, stack_limit) for i in range(workers)
        ]
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for worker in self._workers:
            self._idle.put(worker)
        self._finalizer = weakref.finalize(
            self, _close_workers, self._workers, self.workdir
        )

    @property
    def size(self) -> int:
        """Number of worker processes."""
        return len(self._workers)

    @property
    def restarts(self) -> int:
        """How many times a worker was restarted after a crash or hard timeout."""
        return sum(worker.restarts for worker in self._workers)

    def worker_pids(self) -> list[int]:
        """Return the process ids of the current workers."""
        return [w.process.pid for w in self._workers if w.process is not None]

    def __enter__(self) -> PrologPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every worker and delete the working directory. Idempotent."""
        self._closed = True
        self._finalizer()

    def _hard_limit(self, time_limit: float) -> float:
        # Loading and the query each get time_limit, so the watchdog waits for both.
        if self.hard_time_limit is None:
            return 2 * time_limit + 1.0
        return max(self.hard_time_limit, 2 * time_limit + 0.5)

    def _call(self, payload: dict[str, Any], hard_limit: float) -> tuple[dict, float]:
        if self._closed:
            raise RuntimeError("the PrologPool is closed; create a new one")
        payload["id"] = next(self._ids)
        worker = self._idle.get()
        try:
            if self.recycle_after and worker.requests >= self.recycle_after:
                worker.restart(f"recycled after {worker.requests} requests")
            start = time.perf_counter()
            try:
                reply = worker.request(payload, hard_limit)
            except BaseException:
                # Interrupted mid-request (e.g. KeyboardInterrupt): a reply may
                # still be pending, so the next request must get a fresh worker.
                worker.restart("request interrupted")
                raise
            return reply, time.perf_counter() - start
        finally:
            self._idle.put(worker)

    def run(
        self, program: str, query: str = "solve(X)", time_limit: float | None = None
    ) -> PrologResult:
        """Load ``program`` into a fresh sandboxed module and run ``query`` once.

        Args:
            program: Prolog source text.
            query: the goal; its named variables become ``bindings``.
            time_limit: seconds for this query, overriding the pool default.

        Returns:
            A ``PrologResult``. Every outcome of the program is a status; only a
            non-string program (``TypeError``), a ``time_limit`` of 0 or less
            (``ValueError``) or a closed pool (``RuntimeError``) raises.

        Example:
            >>> clpq = ":- use_module(library(clpq)).\n"
            >>> pool.run(clpq + "solve(X) :- {X = 15/2}.").value()
            Fraction(15, 2)
        """
        if not isinstance(program, str):
            raise TypeError(f"program must be str, got {type(program).__name__}")
        if len(program) > self.max_program_chars:
            return PrologResult(
                status="resource_error",
                error=(
                    f"program has {len(program)} characters, over the limit of "
                    f"{self.max_program_chars}; raise max_program_chars to allow it"
                ),
            )
        limit = self.time_limit if time_limit is None else time_limit
        if limit <= 0:
            raise ValueError(f"time_limit must be positive seconds, got {limit}")
        payload = {
            "op": "run",
            "program": program,
            "query": query,
            "time": limit,
            "inferences": self.inference_limit,
        }
        reply, elapsed = self._call(payload, self._hard_limit(limit))
        return _result_from_reply(reply, elapsed)

    def run_many(
        self,
        programs: Sequence[str],
        query: str = "solve(X)",
        progress: bool = False,
        time_limit: float | None = None,
    ) -> list[PrologResult]:
        """Run many programs on all workers at once; results keep the input order."""
        return self._map(lambda p: self.run(p, query, time_limit), programs, progress)

    def analyze(self, program: str) -> ProgramStructure:
        """Count predicates and ``{}/1`` constraints by reading ``program`` as terms.

        Nothing is loaded or executed. Example: the program
        ``solve(X) :- {X = 4}.`` gives 0 predicates and 1 constraint.
        """
        if len(program) > self.max_program_chars:
            message = f"program has {len(program)} characters, over the limit"
            return ProgramStructure(syntax_error=message)
        payload = {"op": "analyze", "program": program}
        reply, _ = self._call(payload, self._hard_limit(self.time_limit))
        if reply.get("status") == "ok":
            return ProgramStructure(reply["predicates"], reply["constraints"])
        return ProgramStructure(syntax_error=reply.get("error") or reply.get("status"))

    def analyze_many(
        self, programs: Sequence[str], progress: bool = False
    ) -> list[ProgramStructure]:
        """Analyze many programs on all workers at once, keeping the input order."""
        return self._map(self.analyze, programs, progress)

    def _map(self, function: Any, items: Sequence[str], progress: bool) -> list:
        if not items:
            return []
        with ThreadPoolExecutor(max_workers=self.size) as executor:
            results = executor.map(function, items)
            if progress:
                from tqdm.auto import tqdm

                results = tqdm(results, total=len(items), desc="prolog", unit="prog")
            return list(results)


# Name of the temporary module (and source file) that a worker loads each program into.
_TEMP_MODULE = re.compile(r"'?tmp-\d+-\d+'?")
_QUALIFIED = re.compile(r"'?tmp-\d+-\d+'?:(?=[^\d])")


def _clean_text(text: str) -> str:
    """Drop the per-request module name from messages, naming the source "program"."""
    return _TEMP_MODULE.sub("program", _QUALIFIED.sub("", text))


def _result_from_reply(reply: dict[str, Any], elapsed: float) -> PrologResult:
    status = reply.get("status", "error")
    if status not in STATUSES:
        logger.warning("unknown status %r from worker, reported as error", status)
        status = "error"
    bindings = {
        name: decode_term(node) for name, node in (reply.get("bindings") or {}).items()
    }
    return PrologResult(
        status=status,
        bindings=bindings,
        texts=dict(reply.get("texts") or {}),
        output=reply.get("output") or "",
        messages=[_clean_text(m) for m in reply.get("messages") or []],
        elapsed=elapsed,
        error=_clean_text(reply["error"]) if reply.get("error") else None,
        query_status=reply.get("query_status", status),
    )


# Default cap for shared_pool(): an idle worker uses about 17 MB of resident memory,
# and a training rank rarely scores more programs at once than this.
SHARED_POOL_MAX_WORKERS = 8

_SHARED_LOCK = threading.Lock()
_SHARED: dict[str, Any] = {}


def shared_pool(workers: int | None = None) -> PrologPool:
    """Return this process's shared pool, creating it on first use.

    Reward functions call this instead of building pools of their own. The pool
    is closed when the process exits. A forked child gets a new pool of its own.

    Args:
        workers: pool size on creation; ``None`` means the number of CPU cores,
            at most ``SHARED_POOL_MAX_WORKERS``. Ignored once the pool exists.
    """
    with _SHARED_LOCK:
        pool = _SHARED.get("pool")
        if pool is None or _SHARED.get("pid") != os.getpid() or pool._closed:
            size = workers or min(SHARED_POOL_MAX_WORKERS, os.cpu_count() or 1)
            pool = PrologPool(workers=size)
            _SHARED["pool"] = pool
            _SHARED["pid"] = os.getpid()
            if not _SHARED.get("atexit"):
                atexit.register(_close_shared)
                _SHARED["atexit"] = True
        return pool


def _close_shared() -> None:
    pool = _SHARED.get("pool")
    if pool is not None and _SHARED.get("pid") == os.getpid():
        pool.close()
