"""Proximal policy optimisation's losses (Schulman et al., 2017).

With ``rho = exp(log pi_new(a|o) - log pi_old(a|o))`` and advantages ``A``:

  L_clip  = -mean(min(rho A, clip(rho, 1 - eps, 1 + eps) A))
  L_value = mean((V(o) - R)^2)
  loss    = L_clip + value_coef L_value - entropy_coef H(pi_new)

every mean taken over the valid steps (``valid`` 1.0, padding 0.0).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class PPOSettings(NamedTuple):
  """PPO's hyper-parameters: the clip range, the loss weights, the epochs and
  minibatches of one update, and the advantage estimator's discount and lambda."""

  clip: float = 0.2
  value_coef: float = 0.5
  entropy_coef: float = 0.01
  epochs: int = 4
  minibatches: int = 4
  gamma: float = 0.99
  gae_lambda: float = 0.3
  normalize_advantages: bool = True


def masked_mean(x: jax.Array, valid: jax.Array) -> jax.Array:
  return jnp.sum(x * valid) / jnp.maximum(jnp.sum(valid), 1.0)


def clipped_surrogate(
  log_probs: jax.Array,
  old_log_probs: jax.Array,
  advantages: jax.Array,
  valid: jax.Array,
  clip: float,
) -> jax.Array:
  """``L_clip`` above (a loss: minimise it)."""
  ratio = jnp.exp(log_probs - old_log_probs)
  clipped = jnp.clip(ratio, 1.0 - clip, 1.0 + clip)
  return -masked_mean(jnp.minimum(ratio * advantages, clipped * advantages), valid)


def categorical_entropy(logits: jax.Array) -> jax.Array:
  log_p = jax.nn.log_softmax(logits)
  return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


def ppo_loss(
  logits: jax.Array,
  values: jax.Array,
  actions: jax.Array,
  old_log_probs: jax.Array,
  advantages: jax.Array,
  returns: jax.Array,
  valid: jax.Array,
  settings: PPOSettings,
) -> tuple[jax.Array, dict]:
  """PPO's loss for a categorical policy, and its parts, from the new ``logits``
  and ``values`` of the same steps (any leading axes)."""
  log_all = jax.nn.log_softmax(logits)
  log_probs = jnp.take_along_axis(log_all, actions[..., None], axis=-1)[..., 0]
  policy = clipped_surrogate(log_probs, old_log_probs, advantages, valid, settings.clip)
  value = masked_mean((values - returns) ** 2, valid)
  entropy = masked_mean(categorical_entropy(logits), valid)
  loss = policy + settings.value_coef * value - settings.entropy_coef * entropy
  ratio = jnp.exp(log_probs - old_log_probs)
  return loss, {
    'policy_loss': policy,
    'value_loss': value,
    'entropy': entropy,
    # The estimator k3 of Schulman's "Approximating KL divergence" note.
    'approx_kl': masked_mean((ratio - 1.0) - (log_probs - old_log_probs), valid),
    'clip_fraction': masked_mean(
      (jnp.abs(ratio - 1.0) > settings.clip).astype(logits.dtype), valid
    ),
  }
