"""The reference executor: one fresh ``swipl`` process per program.

It reproduces how the original Prolog-as-a-tool system ran programs, so it
serves as the parity oracle for the pooled engine. It is slow (tens of
milliseconds per program) and has no sandbox, so never give it untrusted
programs outside a disposable machine.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import uuid

logger = logging.getLogger(__name__)

REFERENCE_GOAL = "solve(X), writeln(X), halt"


def run_reference(
    program: str, query_goal: str = REFERENCE_GOAL, timeout: float = 5.0
) -> str | None:
    """Run ``swipl -q -f FILE -g GOAL`` on a program in a temporary directory.

    Args:
        program: Prolog source text.
        query_goal: the goal given to ``-g``.
        timeout: wall-clock limit in seconds.

    Returns:
        The last line of standard output, stripped, or ``None`` when the exit
        code is not 0, standard output is empty, or the run timed out or failed.

    Example:
        >>> run_reference("solve(X) :- X is 1200/80.")
        '15'
    """
    with tempfile.TemporaryDirectory(prefix="provex-ref-") as workdir:
        path = os.path.join(workdir, f"temp_{uuid.uuid4().hex}.pl")
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(program)
        try:
            completed = subprocess.run(
                ["swipl", "-q", "-f", path, "-g", query_goal],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
            )
        except (subprocess.TimeoutExpired, OSError) as exc:
            logger.debug("reference run failed: %s", exc)
            return None
    if completed.returncode != 0:
        return None
    lines = completed.stdout.strip().splitlines()
    if not lines:
        return None
    return lines[-1].strip()
