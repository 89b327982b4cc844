"""Sandboxed SWI-Prolog execution: a persistent worker pool and the reference executor."""

from provex.prolog.engine.pool import (
    STATUSES,
    PrologPool,
    PrologResult,
    ProgramStructure,
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
