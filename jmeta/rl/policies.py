"""Stochastic policies over jmeta's pytree models.

A ``Policy`` is a NamedTuple of pure functions of a params pytree, so
``jax.grad`` (and the second derivatives of MAML-RL) go through it like any model:

* ``init(key) -> params``;
* ``sample(params, observation, key) -> action`` for one observation;
* ``log_prob(params, observations, actions) -> log pi(a | o)`` over any leading
  axes (``(episodes, time)`` in the policy-gradient objectives);
* ``kl(old_params, new_params, observations) -> KL(pi_old(. | o) || pi_new(. | o))``
  in closed form over any leading axes (TRPO's constraint), or None.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jmeta.models.base import Model
from jmeta.models.mlp import mlp
from jmeta.validation import check_positive_int


class Policy(NamedTuple):
  """A stochastic policy as pure functions (see the module doc)."""

  init: Callable[[jax.Array], Any]
  sample: Callable[[Any, jax.Array, jax.Array], jax.Array]
  log_prob: Callable[[Any, jax.Array, jax.Array], jax.Array]
  kl: Callable[[Any, Any, jax.Array], jax.Array] | None = None


def gaussian_mlp_policy(
  observation_size: int,
  action_size: int,
  *,
  hidden_sizes: Sequence[int] = (100, 100),
  activation: Callable[[jax.Array], jax.Array] = jax.nn.relu,
  init_log_std: float = 0.0,
) -> Policy:
  """A diagonal Gaussian whose mean is an MLP of the observation and whose log
  standard deviation is a learned vector, independent of the observation.

  The policy of Finn et al. (2017) for 2D navigation is the default: two hidden
  layers of 100 ReLU units; the initial standard deviation is 1, as in
  pytorch-maml-rl. Params: ``{'mean': mlp params, 'log_std': (action_size,)}``.
  Sampled actions are not clipped here (the environment clips them), so
  ``log_prob`` is that of the unclipped sample.
  """
  observation_size = check_positive_int(observation_size, 'observation_size')
  action_size = check_positive_int(action_size, 'action_size')
  mean_model = mlp(hidden_sizes, action_size, activation=activation)

  def init(key: jax.Array) -> dict:
    return {
      'mean': mean_model.init(key, jnp.zeros((1, observation_size))),
      'log_std': jnp.full((action_size,), init_log_std, jnp.float32),
    }

  def sample(params: dict, observation: jax.Array, key: jax.Array) -> jax.Array:
    mean = mean_model.apply(params['mean'], observation)
    noise = jax.random.normal(key, mean.shape, mean.dtype)
    return mean + jnp.exp(params['log_std']) * noise

  def log_prob(params: dict, observations: jax.Array, actions: jax.Array):
    mean = mean_model.apply(params['mean'], observations)
    log_std = params['log_std']
    z = (actions - mean) * jnp.exp(-log_std)
    per_dim = -0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi)
    return jnp.sum(per_dim, axis=-1)

  def kl(old: dict, new: dict, observations: jax.Array):
    mean_old = mean_model.apply(old['mean'], observations)
    mean_new = mean_model.apply(new['mean'], observations)
    var_old, var_new = jnp.exp(2 * old['log_std']), jnp.exp(2 * new['log_std'])
    per_dim = (
      new['log_std']
      - old['log_std']
      + (var_old + (mean_old - mean_new) ** 2) / (2 * var_new)
      - 0.5
    )
    return jnp.sum(per_dim, axis=-1)

  return Policy(init, sample, log_prob, kl)


def categorical_policy(model: Model, observation_shape: Sequence[int]) -> Policy:
  """A categorical distribution whose logits are ``model.apply(params, obs)``.

  ``model`` is any jmeta model with one output per action, e.g.
  ``jmeta.mlp((64, 64), num_actions)``, or ``jmeta.mlp((), num_actions)`` on one-hot
  states: a tabular softmax policy.
  """
  observation_shape = tuple(int(s) for s in observation_shape)

  def init(key: jax.Array):
    return model.init(key, jnp.zeros((1, *observation_shape)))

  def sample(params, observation: jax.Array, key: jax.Array) -> jax.Array:
    logits = model.apply(params, observation)
    return jax.random.categorical(key, logits).astype(jnp.int32)

  def log_prob(params, observations: jax.Array, actions: jax.Array):
    logits = jax.nn.log_softmax(model.apply(params, observations))
    return jnp.take_along_axis(logits, actions[..., None], axis=-1)[..., 0]

  def kl(old, new, observations: jax.Array):
    log_old = jax.nn.log_softmax(model.apply(old, observations))
    log_new = jax.nn.log_softmax(model.apply(new, observations))
    return jnp.sum(jnp.exp(log_old) * (log_old - log_new), axis=-1)

  return Policy(init, sample, log_prob, kl)
