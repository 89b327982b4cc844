"""Stage bookkeeping: skip finished stages, time each one, call provex commands."""

from __future__ import annotations

import json
import logging
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PARAMS_NAME = ".demo-params.json"


class DemoError(RuntimeError):
    """A demo stage failed; the message names the stage and the command."""


@dataclass
class StageRecord:
    """The outcome of one stage: wall and CPU time in seconds, and what it produced."""

    name: str
    title: str
    seconds: float
    cpu_seconds: float
    reused: bool
    info: dict[str, Any] = field(default_factory=dict)


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_cli(args: list[str]) -> None:
    """Run one ``provex`` command line in this process, as a user would type it.

    Raises:
        DemoError: when the command exits with a non-zero status.
    """
    import typer

    from provex.commands import app

    command = typer.main.get_command(app)
    logger.info("provex %s", " ".join(args))
    try:
        status = command.main(args=args, prog_name="provex", standalone_mode=False)
    except typer.TyperException as err:  # usage errors, bad option values
        message = err.format_message() if hasattr(err, "format_message") else err
        raise DemoError(f"`provex {' '.join(args)}` failed: {message}") from err
    if isinstance(status, int) and status != 0:
        raise DemoError(f"`provex {' '.join(args)}` exited with status {status}")


class Stages:
    """Run named stages once: a stage whose marker contains the same parameters is
    skipped and its recorded timing reused.

    Markers live in ``<out>/stages/<name>.json``. When a stage's parameters change,
    the output paths it owns are deleted before it runs again.
    """

    def __init__(self, out: Path, total: int, echo: Callable[[str], None]) -> None:
        self.out = out
        self.total = total
        self.echo = echo
        self.records: list[StageRecord] = []
        (out / "stages").mkdir(parents=True, exist_ok=True)

    def marker(self, name: str) -> Path:
        return self.out / "stages" / f"{name.replace('/', '--')}.json"

    def run(
        self,
        name: str,
        title: str,
        params: dict[str, Any],
        work: Callable[[], dict[str, Any] | None],
        owns: list[Path] | None = None,
    ) -> StageRecord:
        """Run ``work`` unless the stage already finished with ``params``.

        Args:
            name: stage id, unique within the demo.
            title: one line for the terminal and the report.
            params: everything the stage's outputs depend on (JSON-serialisable).
            work: does the stage; returns facts for the report.
            owns: files or folders the stage writes; they are deleted when an
                earlier run used other parameters.
        """
        number = len(self.records) + 1
        params = json.loads(json.dumps(params, default=str))
        marker = self.marker(name)
        if marker.exists():
            saved = json.loads(marker.read_text())
            if saved.get("params") == params:
                record = StageRecord(
                    name,
                    title,
                    saved["seconds"],
                    saved.get("cpu_seconds", 0.0),
                    True,
                    saved.get("info", {}),
                )
                self.records.append(record)
                self.echo(
                    f"[{number}/{self.total}] {title}: done before "
                    f"({record.seconds:.0f} s), reused"
                )
                return record
            marker.unlink()
        for path in owns or []:
            _reset(path, params)
        self.echo(f"[{number}/{self.total}] {title} ...")
        started, cpu_started = time.time(), _cpu_seconds()
        info = work() or {}
        seconds = time.time() - started
        cpu = _cpu_seconds() - cpu_started
        record = StageRecord(name, title, seconds, cpu, False, info)
        marker.write_text(
            json.dumps(
                {
                    "params": params,
                    "seconds": round(seconds, 1),
                    "cpu_seconds": round(cpu, 1),
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "info": info,
                },
                indent=2,
                default=str,
            )
        )
        self.records.append(record)
        self.echo(f"[{number}/{self.total}] {title}: {seconds:.0f} s (CPU {cpu:.0f} s)")
        return record


def _reset(path: Path, params: dict[str, Any]) -> None:
    """Delete ``path`` if an earlier run with other parameters wrote it, then record
    the current parameters beside it so an interrupted stage can resume."""
    folder_like = path.suffix == ""
    note = path / PARAMS_NAME if folder_like else path.with_name(path.name + ".params")
    if note.exists() and json.loads(note.read_text()) != params:
        logger.info("settings of %s changed; starting it again", path)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            for sibling in path.parent.glob(path.stem + "*"):
                sibling.unlink()
    if folder_like:
        path.mkdir(parents=True, exist_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    note.write_text(json.dumps(params, indent=2))
