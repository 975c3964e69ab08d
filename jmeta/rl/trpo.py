"""TRPO's pieces (Schulman et al., 2015): conjugate gradient on Hessian-vector
products of the KL, the step to the trust region's edge, and the backtracking line
search, as pure functions of params pytrees.

MAML-RL's outer step in Finn et al. (2017) is TRPO on the post-adaptation
surrogate with ``max_kl = 0.01`` (cbfinn/maml_rl; pytorch-maml-rl: 10 CG iterations,
damping 0.01, line-search ratio 0.5 over 15 steps). These functions are what that
step is made of; ``jmeta.rl.maml_trpo_step`` assembles them into that outer step
(``jmeta.rl.maml_rl`` trains with any optax optimiser instead).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

import jax
import jax.numpy as jnp
import optax

from jmeta.validation import check_positive_int, check_positive_real


def conjugate_gradient(
  matvec: Callable[[Any], Any],
  b: Any,
  *,
  iterations: int = 10,
  residual_tol: float = 1e-10,
) -> Any:
  """Approximately solves ``A x = b`` for a symmetric positive-definite ``A`` given
  as ``matvec(x) = A x`` over pytrees, from ``x = 0``, in at most ``iterations``
  steps (``n`` steps solve an n-dimensional system exactly in exact arithmetic).
  Stops updating once the squared residual norm falls below ``residual_tol``."""
  iterations = check_positive_int(iterations, 'iterations')
  dot = lambda u, v: optax.tree.vdot(u, v)  # noqa: E731
  x = jax.tree.map(jnp.zeros_like, b)

  def body(_, carry):
    x, r, p, rr = carry
    active = rr > residual_tol
    ap = matvec(p)
    alpha = jnp.where(active, rr / jnp.where(active, dot(p, ap), 1.0), 0.0)
    x = jax.tree.map(lambda x, p: x + alpha * p, x, p)
    r = jax.tree.map(lambda r, ap: r - alpha * ap, r, ap)
    new_rr = dot(r, r)
    beta = jnp.where(active, new_rr / jnp.where(active, rr, 1.0), 0.0)
    p = jax.tree.map(lambda r, p: r + beta * p, r, p)
    return x, r, p, jnp.where(active, new_rr, rr)

  rr = dot(b, b)
  x, *_ = jax.lax.fori_loop(0, iterations, body, (x, b, b, rr))
  return x


def hessian_vector_product(
  fn: Callable[[Any], jax.Array], params: Any, damping: float = 0.0
) -> Callable[[Any], Any]:
  """``v -> (hess fn(params) + damping I) v`` by forward-over-reverse
  differentiation; with ``fn`` the mean KL from the old policy, the Fisher-vector
  product TRPO solves with."""
  damping = check_positive_real(damping, 'damping', allow_zero=True)

  def matvec(v):
    hv = jax.jvp(jax.grad(fn), (params,), (v,))[1]
    return jax.tree.map(lambda h, v: h + damping * v, hv, v)

  return matvec


class TRPOOptions(TypedDict, total=False):
  """``trpo_step``'s options, for a step built on it that hands them on
  (``jmeta.rl.maml_trpo_step``); ``trpo_step`` has their defaults."""

  max_kl: float
  damping: float
  cg_iterations: int
  backtrack_ratio: float
  line_search_steps: int


def trpo_step(
  surrogate: Callable[[Any], jax.Array],
  kl: Callable[[Any], jax.Array],
  params: Any,
  *,
  max_kl: float = 0.01,
  damping: float = 0.01,
  cg_iterations: int = 10,
  backtrack_ratio: float = 0.5,
  line_search_steps: int = 15,
) -> tuple[Any, dict[str, jax.Array]]:
  """One TRPO ascent step on ``surrogate`` within ``kl(new) <= max_kl``.

  The direction ``s = F^{-1} g`` (``F`` the KL's Hessian at ``params``, by CG),
  scaled to the trust region's edge, ``sqrt(2 max_kl / s^T F s) s``, then shrunk by
  ``backtrack_ratio`` until the surrogate improves and the KL is within bounds;
  the params stay put if no shrink qualifies. Returns the params and diagnostics.
  """
  max_kl = check_positive_real(max_kl, 'max_kl')
  line_search_steps = check_positive_int(line_search_steps, 'line_search_steps')
  value, grads = jax.value_and_grad(surrogate)(params)
  fisher = hessian_vector_product(kl, params, damping)
  direction = conjugate_gradient(fisher, grads, iterations=cg_iterations)
  curvature = optax.tree.vdot(direction, fisher(direction))
  scale = jnp.sqrt(2.0 * max_kl / jnp.maximum(curvature, 1e-12))
  step = jax.tree.map(lambda d: scale * d, direction)

  fractions = backtrack_ratio ** jnp.arange(line_search_steps)

  def candidate(fraction):
    new = jax.tree.map(lambda p, s: p + fraction * s, params, step)
    return surrogate(new) - value, kl(new)

  improvements, kls = jax.lax.map(candidate, fractions)
  # The full step lands on the edge; allow its rounding error.
  ok = (improvements > 0) & (kls <= max_kl * (1 + 1e-6))
  first = jnp.argmax(ok)
  fraction = jnp.where(jnp.any(ok), fractions[first], 0.0)
  new = jax.tree.map(lambda p, s: p + fraction * s, params, step)
  return new, {
    'improvement': jnp.where(jnp.any(ok), improvements[first], 0.0),
    'kl': jnp.where(jnp.any(ok), kls[first], 0.0),
    'step_fraction': fraction,
  }
