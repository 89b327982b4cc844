"""Commands: ``provex prolog run`` and ``provex prolog structure``."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import typer

from provex.commands.apps import prolog_app

PROGRAM_FIELDS = ("program", "output", "code")
_JSON_TYPES = {
    "int": "number",
    "float": "number",
    "bool": "boolean",
    "NoneType": "null",
    "list": "array",
    "dict": "object",
}


def _read_text(path: Path) -> str:
    # Invalid UTF-8 becomes U+FFFD, so a damaged file still gets a verdict.
    return path.read_bytes().decode("utf-8", errors="replace")


def _program_of(row: dict[str, Any], field: str | None, line_number: int) -> str:
    fields = (field,) if field else PROGRAM_FIELDS
    for name in fields:
        value = row.get(name)
        if isinstance(value, str):
            return value
    present = [name for name in fields if name in row]
    if present:
        kind = _JSON_TYPES.get(type(row[present[0]]).__name__, "value")
        raise typer.BadParameter(
            f"line {line_number}: field {present[0]!r} is a JSON {kind}; the "
            "program must be a string"
        )
    raise typer.BadParameter(
        f"line {line_number} has no field {' or '.join(fields)}; "
        f"its fields are {sorted(row)}. Pass --field NAME to choose one."
    )


def _read_programs(path: Path, field: str | None) -> list[str]:
    programs = []
    for line_number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(
                f"{path}:{line_number} is not valid JSON ({exc}); "
                "a .jsonl file needs one JSON object per line"
            ) from exc
        if not isinstance(row, dict):
            raise typer.BadParameter(
                f"{path}:{line_number} is a JSON {type(row).__name__}, not an object"
            )
        programs.append(_program_of(row, field, line_number))
    if not programs:
        raise typer.BadParameter(f"{path} has no programs: every line is blank")
    return programs


def _count_lines(path: Path) -> int:
    """Count the finished result lines of ``path``, cutting off a partial last line.

    A run stopped while writing leaves a line without its newline. It is removed,
    so that the resumed run writes that program's result again on a line of its own.
    """
    if not path.exists():
        return 0
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        with path.open("r+b") as handle:
            handle.truncate(len(data))
    return sum(1 for line in data.splitlines() if line.strip())


_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_VARIABLE = re.compile(r"(?<![A-Za-z0-9_])[A-Z_][A-Za-z0-9_]*")


def _answer_variable(query: str) -> str:
    """Return the first named variable of a query (``X`` when it has none)."""
    for name in _VARIABLE.findall(_QUOTED.sub("''", query)):
        if name != "_":
            return name
    return "X"


def _reference_goal(query: str) -> str:
    return f"{query}, writeln({_answer_variable(query)}), halt"


def _check_limits(time_limit: float, workers: int) -> None:
    if time_limit <= 0:
        raise typer.BadParameter(
            f"{time_limit} is not a positive number of seconds; try 1.0",
            param_hint="--time-limit",
        )
    if workers < 1:
        raise typer.BadParameter(
            f"{workers} workers cannot run anything; give 1 or more",
            param_hint="--workers",
        )


@prolog_app.command("run")
def run_command(
    file: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        help="A Prolog file (.pl), or a .jsonl file with one program per line.",
    ),
    query: str = typer.Option(
        "solve(X)", "--query", "-q", help="Goal to run; its variables are reported."
    ),
    time_limit: float = typer.Option(
        1.0, "--time-limit", "-t", help="Time limit per query, in seconds."
    ),
    workers: int = typer.Option(
        2, "--workers", "-w", help="Number of swipl worker processes for a batch."
    ),
    reference: bool = typer.Option(
        False,
        "--reference",
        help="Use the reference executor instead: a fresh swipl per program running "
        "'QUERY, writeln(V), halt' with V the query's first variable, no sandbox, "
        "5 s timeout (--time-limit does not apply). Reports the last line of its "
        "output.",
    ),
    field: str | None = typer.Option(
        None,
        "--field",
        help="JSONL field with the program (default: program, output or code).",
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        dir_okay=False,
        help="JSONL file for batch results. Existing lines are kept and the run "
        "resumes after them. Default: print to standard output.",
    ),
) -> None:
    """Run one Prolog program, or a JSONL batch, and print the results as JSON."""
    _check_limits(time_limit, workers)
    if file.suffix == ".jsonl":
        _run_batch(file, query, time_limit, workers, reference, field, output)
        return
    program = _read_text(file)
    if reference:
        text = _reference(program, query)
        typer.echo(json.dumps({"reference": text}))
        return
    from provex.prolog.engine import PrologPool

    with PrologPool(workers=1, time_limit=time_limit) as pool:
        result = pool.run(program, query)
    typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))


def _reference(program: str, query: str) -> str | None:
    from provex.prolog.engine import run_reference

    return run_reference(program, query_goal=_reference_goal(query))


def _run_batch(
    file: Path,
    query: str,
    time_limit: float,
    workers: int,
    reference: bool,
    field: str | None,
    output: Path | None,
) -> None:
    from tqdm.auto import tqdm

    from provex.prolog.engine import PrologPool

    programs = _read_programs(file, field)
    done = _count_lines(output) if output else 0
    if done > len(programs):
        raise typer.BadParameter(
            f"{output} already has {done} lines but {file} has only "
            f"{len(programs)} programs; delete {output} or choose another --output"
        )
    sink = output.open("a", encoding="utf-8") if output else sys.stdout
    chunk = 64 if reference else 256
    bar = tqdm(total=len(programs), initial=done, desc="prolog", unit="prog")
    try:
        if reference:
            for index in range(done, len(programs)):
                row = {"index": index, "reference": _reference(programs[index], query)}
                sink.write(json.dumps(row, ensure_ascii=False) + "\n")
                sink.flush()
                bar.update(1)
            return
        with PrologPool(workers=workers, time_limit=time_limit) as pool:
            for start in range(done, len(programs), chunk):
                batch = programs[start : start + chunk]
                results = pool.run_many(batch, query=query)
                for offset, result in enumerate(results):
                    row = {"index": start + offset, **result.to_dict()}
                    sink.write(json.dumps(row, ensure_ascii=False) + "\n")
                sink.flush()
                bar.update(len(batch))
    finally:
        bar.close()
        if output:
            sink.close()


@prolog_app.command("structure")
def structure_command(
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="A Prolog file (.pl) to read."
    ),
) -> None:
    """Print the predicate and {}/1 constraint counts of a program as JSON."""
    from provex.prolog.engine import PrologPool

    with PrologPool(workers=1) as pool:
        structure = pool.analyze(_read_text(file))
    typer.echo(
        json.dumps(
            {
                "predicates": structure.predicates,
                "constraints": structure.constraints,
                "valid": structure.valid,
                "syntax_error": structure.syntax_error,
            }
        )
    )
