"""Sandboxed SWI-Prolog execution: a pool of persistent workers, and the reference."""

from provex.prolog.engine.pool import (
    STATUSES,
    ProgramStructure,
    PrologPool,
    PrologResult,
    shared_pool,
)
from provex.prolog.engine.reference import run_reference
from provex.prolog.engine.terms import Atom, Compound, Opaque, Var, decode_term

__all__ = [
    "STATUSES",
    "Atom",
    "Compound",
    "Opaque",
    "PrologPool",
    "PrologResult",
    "ProgramStructure",
    "Var",
    "decode_term",
    "run_reference",
    "shared_pool",
]
