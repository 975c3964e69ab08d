"""Workarounds for two XLA:CPU bugs in jaxlib 0.10.2: YNNPACK fusions that crash on
some shapes, and batched LAPACK calls that deadlock.

**YNNPACK fusions.** jaxlib 0.10.2 and 0.11.0 hand CPU dots and reductions to YNNPACK
fusions (``__ynn_fusion``) by default, and these can end the process with a
segmentation fault (jax-ml/jax#39257 and #40412; fixed upstream in XNNPACK after
0.10.2 was built). ProtoNet's training episode (60-way, 5-shot, 5 queries) hit one
with prototypes computed as a one-hot matmul: ``tests/xla_bugs/ynn_segfault.py``
reproduces it in 15 lines of JAX. jmeta's learners avoid that pattern
(``jmeta.metric.class_means`` is a segment sum), and
``tests/experiments/test_paper_shapes.py`` runs every Omniglot learner at its
paper's largest episodes with the defaults.

The fusions stay on by default because turning them off makes the gradient-based
learners' CPU meta-steps much slower (``benchmarks/results/cpu_ynn_fusion.md``). If your own
model hits the crash, call ``disable_ynn_fusions()`` before any JAX computation,
or run with ``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=``.

**Batched LAPACK calls.** jaxlib 0.10.2's CPU LAPACK kernels (LU, Cholesky,
triangular solves, ...) split a large enough batch of matrices (batch x n^3 of at
least 2e5 flops) into chunks on XLA's intra-op thread pool, and block that pool
thread until the chunks finish (``ParallelBatchMap`` in
``jaxlib/cpu/lapack_kernels.cc``). When XLA runs as many such calls at once as the
pool has threads, every thread waits for chunks that no thread is free to run: the
program hangs with no CPU use. On this 2-core machine MAML-RL's TRPO step on
half-cheetah hung so (its linear baselines fit a 40 x 40 system per task), and
``tests/xla_bugs/lapack_deadlock.py`` hangs in 20 lines. ``one_matrix_at_a_time``
wraps a linear-algebra function so that ``vmap`` loops over the batch instead: each
LAPACK call then gets one matrix and runs on the calling thread. jmeta's own solves
and factorizations of batched data use it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import jax

# Versions known to carry both the flag and the crash; the flag is passed only to
# these, because XLA aborts on a flag it does not know.
AFFECTED_JAXLIB = ('0.10.2', '0.11.0')
YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type'


def needs_ynn_flag(jaxlib_version: str, xla_flags: str) -> bool:
  """Whether ``disable_ynn_fusions`` should add the flag: an affected jaxlib, and
  ``XLA_FLAGS`` does not set it already (the user's own value wins)."""
  return jaxlib_version in AFFECTED_JAXLIB and YNN_FLAG not in xla_flags


def _backends_started() -> bool:
  try:
    from jax._src import xla_bridge

    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):  # a JAX without the query: assume not
    return False


def disable_ynn_fusions() -> bool:
  """Turns XLA:CPU's YNNPACK fusions off for this process; returns whether it did.

  XLA reads ``XLA_FLAGS`` when JAX starts its backends, so call this before any JAX
  computation; afterwards it warns and changes nothing. On a jaxlib without the
  crash (or without the flag) it does nothing.
  """
  import jaxlib

  flags = os.environ.get('XLA_FLAGS', '')
  if not needs_ynn_flag(jaxlib.__version__, flags):
    return False
  if _backends_started():
    warnings.warn(
      'JAX has already started its backends, so turning off the YNNPACK fusions '
      'now has no effect. Call jmeta.xla_workarounds.disable_ynn_fusions() before '
      f'any JAX computation, or set XLA_FLAGS="{YNN_FLAG}=" before starting Python.',
      RuntimeWarning,
      stacklevel=2,
    )
    return False
  os.environ['XLA_FLAGS'] = f'{flags} {YNN_FLAG}='.strip()
  return True


def one_matrix_at_a_time(fn: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
  """``fn`` (a LAPACK-backed function of unbatched matrices, positional arguments),
  batched by ``vmap`` as a loop of one-matrix calls (``jax.custom_batching.
  sequential_vmap``) instead of one batched call, which can deadlock XLA:CPU (see the
  module docstring). The values are ``fn``'s, matrix by matrix. Derivatives are
  ``fn``'s own, so a differentiated program still makes batched calls for them.
  """
  looped = jax.custom_batching.sequential_vmap(fn)

  @jax.custom_jvp
  def wrapped(*args):
    return looped(*args)

  wrapped.defjvp(lambda primals, tangents: jax.jvp(fn, primals, tangents))
  return wrapped
