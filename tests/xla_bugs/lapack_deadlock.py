"""Minimal reproduction: concurrent batched LAPACK calls deadlock XLA:CPU (jaxlib 0.10.2).

Eight independent batched solves of 16 SPD 40 x 40 systems in one jitted program.
Each call's batch is large enough (16 x 40^3 flops) that jaxlib splits it into
chunks on XLA's intra-op pool and blocks its pool thread until they finish; with
several such calls running at once every pool thread waits and none runs a chunk.

  python tests/xla_bugs/lapack_deadlock.py            # 2-core AMD EPYC: hangs, 0% CPU
  python tests/xla_bugs/lapack_deadlock.py --looped   # prints ok

``--looped`` vmaps the solve through ``jmeta.xla_workarounds.one_matrix_at_a_time``,
so that each LAPACK call gets one matrix. Four calls instead of eight did not hang
on that machine; gdb showed both ``tf_XLAEigen`` threads in ``BlockingCounter::Wait``
under ``jax::ParallelBatchMap`` and ``lapack_sgetrf_ffi``.
"""

import sys

import jax
import jax.numpy as jnp

N, BATCH, CALLS = 40, 16, 8


def solve(a, b):
  return jnp.linalg.solve(a, b)


if __name__ == '__main__':
  if '--looped' in sys.argv:
    from jmeta.xla_workarounds import one_matrix_at_a_time

    solve = one_matrix_at_a_time(solve)
  a = jax.random.normal(jax.random.key(0), (CALLS, BATCH, N, N))
  a = a @ jnp.swapaxes(a, -1, -2) + N * jnp.eye(N)
  b = jnp.ones((CALLS, BATCH, N))
  solves = jax.jit(
    lambda a, b: sum(jax.vmap(solve)(a[i], b[i]).sum() for i in range(CALLS))
  )
  for step in range(20):
    total = jax.block_until_ready(solves(a, b + step))
  print('ok', float(total))
