"""Task families for learned optimizers: distributions over optimisation problems.

A ``TaskFamily`` is pure, seeded functions, as in learned_optimization:
``sample(key) -> task`` draws a problem (a pytree of arrays, so a batch of them
``vmap``s), ``init(task, key) -> params`` its starting point, and
``loss(task, params) -> scalar`` its objective.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jmeta.validation import check_positive_int


class TaskFamily(NamedTuple):
  """A distribution over optimisation problems; see the module docstring."""

  name: str
  sample: Callable[[jax.Array], Any]
  init: Callable[[Any, jax.Array], Any]
  loss: Callable[[Any, Any], jax.Array]


class Quadratic(NamedTuple):
  """f(theta) = ||W theta - y||^2."""

  w: jax.Array
  y: jax.Array


def quadratics(dim: int = 10) -> TaskFamily:
  """Random quadratics f(theta) = ||W theta - y||^2 in ``dim`` dimensions.

  Andrychowicz et al. (2016), Sec. 3.1: W (dim x dim) and y (dim) have i.i.d.
  standard normal entries; so has the starting point theta_0 here (the paper does
  not say how it starts).
  """
  dim = check_positive_int(dim, 'dim')

  def sample(key):
    kw, ky = jax.random.split(key)
    return Quadratic(jax.random.normal(kw, (dim, dim)), jax.random.normal(ky, (dim,)))

  def init(task, key):
    del task
    return jax.random.normal(key, (dim,))

  def loss(task, params):
    return jnp.sum(jnp.square(task.w @ params - task.y))

  return TaskFamily(f'quadratic{dim}', sample, init, loss)
