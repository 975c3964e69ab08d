"""Minimal reproduction: XLA:CPU YNNPACK fusion segfault in jaxlib 0.10.2.

ProtoNet's loss on a 60-way 5-shot 5-query episode, reduced to pure JAX: a 2x2
max-pool, prototypes as a one-hot matmul, squared distances, and the gradient.

  python tests/xla_bugs/ynn_segfault.py       # jaxlib 0.10.2, AVX-512: SIGSEGV
  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python tests/xla_bugs/ynn_segfault.py

On an AMD EPYC with AVX-512 the first crashes in ``ynn::dot_fp32_1x64x1_1x16x1_avx512``
on an XLA worker thread; the second prints ``ok``, as do 20-way, 8 features, or
prototypes from ``jax.ops.segment_sum`` (what ``jmeta.metric.class_means`` uses).
"""

import jax
import jax.numpy as jnp

N_WAY, SHOTS, QUERIES, DIM = 60, 5, 5, 64


def loss(x):
  pooled = x.reshape(x.shape[0], 1, 2, 1, 2, DIM).max(axis=(2, 4))
  h = pooled.reshape(x.shape[0], DIM)
  support, query = h[: N_WAY * SHOTS], h[N_WAY * SHOTS :]
  one_hot = jax.nn.one_hot(jnp.tile(jnp.arange(N_WAY), SHOTS), N_WAY)
  prototypes = one_hot.T @ support / SHOTS
  return jnp.sum((query[:, None] - prototypes[None]) ** 2)


if __name__ == '__main__':
  x = jax.random.uniform(jax.random.key(0), (N_WAY * (SHOTS + QUERIES), 2, 2, DIM))
  print('ok', float(jax.jit(jax.grad(loss))(x).sum()))
