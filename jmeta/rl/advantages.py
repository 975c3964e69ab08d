"""Returns, the linear feature baseline and generalised advantage estimation.

All functions take per-step arrays with the time axis last, ``(episodes, T)``, and
a ``valid`` mask of the same shape (``jmeta.rl.Trajectory.valid``); steps after an
episode ended get zero returns, values and advantages.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jmeta.validation import check_positive_real
from jmeta.xla_workarounds import one_matrix_at_a_time

# rllab's time feature scale (t / 100), kept by pytorch-maml-rl and learn2learn.
TIME_SCALE = 100.0

# Tasks' baselines are fitted under vmap; batched, their solves can deadlock XLA:CPU
# (half-cheetah's TRPO step did: jmeta.xla_workarounds).
_solve = one_matrix_at_a_time(jnp.linalg.solve)


def discounted_returns(
  rewards: jax.Array, valid: jax.Array, gamma: float = 1.0
) -> jax.Array:
  """``R_t = sum_{k >= t} gamma^(k - t) r_k`` over the valid steps (time axis last)."""
  return _reverse_discounted_sum(rewards * valid, gamma, valid)


def _reverse_discounted_sum(x: jax.Array, discount: float, valid: jax.Array):
  """``y_t = x_t + discount * y_{t+1}`` back along the last (time) axis, from
  ``y_T = 0``; zero on the invalid steps."""

  def back(carry, x_t):
    carry = x_t + discount * carry
    return carry, carry

  _, out = jax.lax.scan(
    back,
    jnp.zeros(x.shape[:-1], x.dtype),
    jnp.moveaxis(x, -1, 0),
    reverse=True,
  )
  return jnp.moveaxis(out, 0, -1) * valid


def baseline_features(observations: jax.Array) -> jax.Array:
  """The features of the linear baseline of Duan et al. (2016), per step.

  ``[o, o^2, t/100, (t/100)^2, (t/100)^3, 1]`` with ``o`` the observation clipped
  to [-10, 10] (flattened) and ``t`` the step's index, as rllab's
  ``LinearFeatureBaseline``. ``observations``: ``(..., T, features)``, each
  observation flattened.
  """
  o = jnp.clip(observations, -10.0, 10.0)
  t = jnp.arange(o.shape[-2], dtype=o.dtype) / TIME_SCALE
  t = jnp.broadcast_to(t[:, None], (*o.shape[:-1], 1))
  ones = jnp.ones_like(t)
  return jnp.concatenate([o, o**2, t, t**2, t**3, ones], axis=-1)


def linear_baseline(
  observations: jax.Array,
  returns: jax.Array,
  valid: jax.Array,
  reg: float = 1e-5,
) -> jax.Array:
  """Values of the linear feature baseline fitted to one task's episodes.

  Ridge regression of ``returns`` on ``baseline_features`` over every valid step
  of the ``(episodes, T)`` batch, ``(X^T X + reg I) w = X^T R``, as rllab's
  ``LinearFeatureBaseline`` (Duan et al., 2016), which cbfinn/maml_rl and
  pytorch-maml-rl fit per task. Returns the fitted values, zero on invalid steps.
  ``observations``: ``(episodes, T, *obs_shape)``.
  """
  reg = check_positive_real(reg, 'reg')
  # The baseline is a constant of the policy gradient: fitted to the data alone.
  observations, returns = jax.lax.stop_gradient((observations, returns))
  obs = observations.reshape(*observations.shape[:2], -1).astype(returns.dtype)
  x = baseline_features(obs) * valid[..., None]
  x2 = x.reshape(-1, x.shape[-1])
  y = (returns * valid).reshape(-1)
  gram = x2.T @ x2 + reg * jnp.eye(x2.shape[-1], dtype=x2.dtype)
  weights = _solve(gram, x2.T @ y)
  return (x @ weights) * valid


def gae(
  rewards: jax.Array,
  values: jax.Array,
  valid: jax.Array,
  gamma: float = 1.0,
  lam: float = 1.0,
) -> jax.Array:
  """Generalised advantage estimates (Schulman et al., 2016), time axis last.

  ``delta_t = r_t + gamma V_{t+1} - V_t`` (``V`` zero past the last valid step),
  ``A_t = delta_t + gamma lam A_{t+1}``. With ``lam = 1`` this is the discounted
  return minus the baseline.
  """
  values = values * valid
  next_values = jnp.concatenate([values[..., 1:], jnp.zeros_like(values[..., :1])], -1)
  deltas = (rewards + gamma * next_values - values) * valid
  return _reverse_discounted_sum(deltas, gamma * lam, valid)


def normalize(advantages: jax.Array, valid: jax.Array, eps: float = 1e-8) -> jax.Array:
  """Advantages shifted and scaled to mean 0 and standard deviation 1 over the
  valid steps, as pytorch-maml-rl does before every policy-gradient step."""
  count = jnp.maximum(jnp.sum(valid), 1.0)
  mean = jnp.sum(advantages * valid) / count
  var = jnp.sum(((advantages - mean) * valid) ** 2) / count
  return (advantages - mean) / jnp.sqrt(var + eps) * valid


class AdvantageSettings(NamedTuple):
  """How the advantages of a policy-gradient step are estimated.

  ``baseline``: 'linear' (the feature baseline above, fitted on the same episodes)
  or 'none'. ``normalize``: standardise the advantages over the batch.
  """

  gamma: float = 0.99
  gae_lambda: float = 1.0
  baseline: str = 'linear'
  normalize: bool = True


BASELINES = ('linear', 'none')


def check_advantage_settings(settings: AdvantageSettings) -> AdvantageSettings:
  if settings.baseline not in BASELINES:
    raise ValueError(f'baseline must be one of {BASELINES}, got {settings.baseline!r}.')
  if not 0.0 <= settings.gamma <= 1.0:
    raise ValueError(f'gamma must be in [0, 1], got {settings.gamma}.')
  if not 0.0 <= settings.gae_lambda <= 1.0:
    raise ValueError(f'gae_lambda must be in [0, 1], got {settings.gae_lambda}.')
  return settings


def estimate_advantages(trajectories, settings: AdvantageSettings) -> jax.Array:
  """The advantages of one task's ``(episodes, T)`` trajectories under ``settings``
  (a constant: no gradient flows into them)."""
  rewards, valid = trajectories.rewards, trajectories.valid
  if settings.baseline == 'linear':
    returns = discounted_returns(rewards, valid, settings.gamma)
    values = linear_baseline(trajectories.observations, returns, valid)
  else:
    values = jnp.zeros_like(rewards)
  out = gae(rewards, values, valid, settings.gamma, settings.gae_lambda)
  if settings.normalize:
    out = normalize(out, valid)
  return jax.lax.stop_gradient(out)
