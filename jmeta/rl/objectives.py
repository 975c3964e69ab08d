"""Policy-gradient surrogate objectives: naive, DiCE and ProMP's LVC.

Each takes the log-probabilities ``log pi_theta(a_t | s_t)`` of a batch of
episodes, ``(episodes, T)``, recomputed from params, constant advantages ``A_t`` and
the ``valid`` mask, and returns a scalar whose gradient is the same policy gradient
``mean_{i,t} grad log pi(a_t | s_t) A_t``: they differ in their *second*
derivatives, which is what a meta-gradient through a policy-gradient step sees.
Every mean is over all ``episodes x T`` steps (padding steps count as zeros), a
constant weight, so that the estimates stay unbiased when episodes end early.

* ``naive_surrogate``: ``mean log pi_t A_t``. Its Hessian misses the terms
  ``grad log p(tau) grad log p(tau)^T R`` that come from the trajectory
  distribution's dependence on theta: differentiating it twice is wrong.
* ``dice_surrogate``: the DiCE objective (Foerster et al., 2018) with the
  baseline form of Loaded DiCE (Farquhar et al., 2019),
  ``mean_t (box(C_t) - box(C_{t-1})) A_t``, ``C_t = sum_{k <= t} log pi_k``,
  ``box(x) = exp(x - stop_gradient(x))``. Its value is 0, and every derivative of
  every order is an unbiased estimate of that of the expected return (with
  ``A_t`` the return-to-go, or minus a baseline of the state).
* ``lvc_surrogate``: ProMP's low-variance curvature objective (Rothfuss et al.,
  2019), ``mean_t box(log pi_t) A_t`` (the per-step likelihood ratio
  ``pi / stop_gradient(pi)``): an unbiased gradient, and a biased but
  lower-variance Hessian that keeps the per-step score products and drops those
  across time steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def magic_box(x: jax.Array) -> jax.Array:
  """DiCE's operator: 1 in value, ``d box(x) = box(x) dx`` in every derivative."""
  return jnp.exp(x - jax.lax.stop_gradient(x))


def naive_surrogate(
  log_probs: jax.Array, advantages: jax.Array, valid: jax.Array
) -> jax.Array:
  """``mean_{i,t} log pi(a_t | s_t) A_t`` (see the module doc)."""
  return jnp.mean(log_probs * advantages * valid)


def dice_surrogate(
  log_probs: jax.Array, advantages: jax.Array, valid: jax.Array
) -> jax.Array:
  """Loaded DiCE: ``mean_{i,t} (box(C_t) - box(C_{t-1})) A_t`` (see the module doc)."""
  log_probs = log_probs * valid
  cumulative = jnp.cumsum(log_probs, axis=-1)
  previous = cumulative - log_probs
  return jnp.mean((magic_box(cumulative) - magic_box(previous)) * advantages * valid)


def lvc_surrogate(
  log_probs: jax.Array, advantages: jax.Array, valid: jax.Array
) -> jax.Array:
  """ProMP's LVC: ``mean_{i,t} (pi / stop_gradient(pi))(a_t | s_t) A_t``."""
  return jnp.mean(magic_box(log_probs) * advantages * valid)


SURROGATES = {
  'naive': naive_surrogate,
  'dice': dice_surrogate,
  'lvc': lvc_surrogate,
}
