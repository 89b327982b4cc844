"""Load: four client threads share one pool; every reply belongs to its own request."""

from __future__ import annotations

import threading
from collections import Counter

from provex.prolog.engine import PrologPool, PrologResult

THREADS = 4
PER_THREAD = 500
CRASH_EVERY = 125

# Squaring a 64 MiB integer makes GMP's allocation fail under a 400 MiB
# address-space limit, and GMP aborts the worker process.
CRASH = "solve(X) :- X is 2^(2^29), Y is X*X, Y > 0."


def _program(request: int) -> str:
    if request % CRASH_EVERY == CRASH_EVERY - 1:
        return CRASH
    if request % 2:
        return f":- use_module(library(clpq)).\nsolve(X) :- {{X = {request} * 3 + 1}}."
    return f"base({request}).\nsolve(X) :- base(B), X is B * 3 + 1."


def test_load_replies_match_requests():
    replies: list[tuple[int, PrologResult]] = []
    lock = threading.Lock()

    def client(offset: int) -> None:
        for request in range(offset, THREADS * PER_THREAD, THREADS):
            result = pool.run(_program(request))
            with lock:
                replies.append((request, result))

    with PrologPool(workers=2, time_limit=2.0, memory_limit=400 * 1024**2) as pool:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        restarts = pool.restarts

    counts = Counter(request for request, _ in replies)
    crashes = [r for r, result in replies if result.status == "crashed"]
    wrong = [
        (request, result.status, result.value())
        for request, result in replies
        if _program(request) != CRASH and result.value() != request * 3 + 1
    ]
    expected_crashes = [r for r in range(THREADS * PER_THREAD) if _program(r) == CRASH]
    assert len(replies) == THREADS * PER_THREAD
    assert sorted(counts) == list(range(THREADS * PER_THREAD))
    assert max(counts.values()) == 1
    assert wrong == []
    assert sorted(crashes) == expected_crashes
    assert restarts == len(expected_crashes)
