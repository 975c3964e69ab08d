"""Compiling a jitted step ahead of its loop, and handing the compiler's memory back.

XLA's compiler frees what it used once it finishes: hundreds of MiB for
second-order MAML's meta-update on CPU (``benchmarks/results/cpu_memory_breakdown.md``).
glibc's ``malloc`` keeps those pages, so the process stays at the compiler's peak,
and the step's own buffers come on top of it. Compiling first and trimming the heap
before the first call makes the peak the larger of the two instead of their sum.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import jax


@functools.cache
def _malloc_trim():
  # The running process's own symbols: glibc's malloc_trim, if this is glibc.
  return getattr(ctypes.CDLL(None), 'malloc_trim', None)


def release_host_memory() -> bool:
  """Returns the C heap's freed pages to the operating system; whether it could.

  Calls glibc's ``malloc_trim(0)``, which releases free memory in every malloc
  arena, not only at the top of the heap. Elsewhere (macOS, musl) it does nothing
  and returns False. It frees nothing still in use, so it is safe at any time; it
  pays off right after XLA compiles.
  """
  trim = _malloc_trim()
  if trim is None:
    return False
  trim(0)
  return True


def precompile(fn: Any, *args: Any, **kwargs: Any) -> jax.stages.Compiled:
  """Compiles the jitted ``fn`` for these arguments, then ``release_host_memory()``.

  Returns the compiled executable. JAX keeps it for ``fn`` too: calling ``fn`` with
  arguments of the same shapes, dtypes and shardings runs it without compiling
  again, so a training loop can go on calling ``fn``::

    jmeta.precompile(trainer.step, state, batch)
    for batch in batches:
      state, metrics = trainer.step(state, batch)
  """
  lower = getattr(fn, 'lower', None)
  if not callable(lower):
    raise ValueError(
      f'precompile needs a jitted function (one with .lower), got {fn!r}; wrap it '
      'in jax.jit, or pass the step of make_meta_trainer(..., jit=True).'
    )
  compiled = lower(*args, **kwargs).compile()
  release_host_memory()
  return compiled
