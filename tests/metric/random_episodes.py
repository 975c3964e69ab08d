"""Random image episodes with class-major labels, for the metric-learner tests."""

import jax
import jax.numpy as jnp


def episode(n_way=3, shots=1, queries=2, size=8, seed=0):
  """(support images, support labels, query images, query labels) of one episode:
  uniform pixels, ``(examples, size, size, 1)``, labels ``0..n_way-1`` class-major."""
  k1, k2 = jax.random.split(jax.random.key(seed))
  sx = jax.random.uniform(k1, (n_way * shots, size, size, 1))
  qx = jax.random.uniform(k2, (n_way * queries, size, size, 1))
  sy = jnp.repeat(jnp.arange(n_way), shots)
  qy = jnp.repeat(jnp.arange(n_way), queries)
  return sx, sy, qx, qy
