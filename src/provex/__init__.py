"""provex: small, verifiable and memory-efficient LLM specialists.

Two systems share this package:

- ``provex.prolog``: language models that answer math word problems by writing a
  SWI-Prolog CLP(Q) program defining ``solve(X)``, which is executed and checked.
- ``provex.moe``: FlexMoRE, mixtures of a dense public expert and low-rank domain
  experts obtained by truncated SVD of FlexOlmo expert deltas.
"""

__version__ = "0.1.0"
