"""A per-parameter MLP optimizer in the style of learned_optimization's ``mlp_lopt``.

The model of Metz et al. (2019), "Understanding and correcting pathologies in the
training of learned optimizers": every coordinate of the optimizee feeds one small
MLP, shared by all coordinates, with

* its gradient g, its value theta and momentum accumulators
  m_k <- beta_k m_k + (1 - beta_k) g at the decays beta = (0.1, 0.5, 0.9, 0.99,
  0.999, 0.9999), each of these 8 features divided by its root mean square over
  the parameter's tensor (plus 1e-5 under the root);
* 11 features of the inner step t shared by the whole tensor,
  tanh(t / tau - 1) for tau = 1, 3, 10, ..., 100000.

The MLP (two hidden layers of 32 ReLU units) outputs a direction d and a log
magnitude s, and the step is d exp(exp_mult s) step_mult, with exp_mult = step_mult
= 0.001 as in ``mlp_lopt``.

One addition to ``mlp_lopt``: a fixed SGD path with a learned rate alpha, so that

  theta_{t+1} = theta_t - alpha g - d exp(exp_mult s) step_mult.

With every MLP weight zero (``sgd_meta_params(rule, alpha)``) the MLP outputs
exactly 0 and the rule is plain SGD at rate alpha, bit for bit.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jmeta.learned_optimizers.base import LearnedRule, check_state_matches
from jmeta.validation import check_positive_int, check_positive_real

DECAYS = (0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)
TIMESCALES = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000)
NUM_FEATURES = 2 + len(DECAYS) + len(TIMESCALES)  # 19, as in mlp_lopt


class MLPState(NamedTuple):
  """Momentum accumulators (trees like the params, leaves ``param.shape + (6,)``)
  and the inner step count."""

  momentum: Any
  step: jax.Array


def step_features(step: jax.Array) -> jax.Array:
  """tanh(t / tau - 1) for each of ``TIMESCALES``: shape (11,)."""
  t = jnp.asarray(step, jnp.float32)
  return jnp.tanh(t / jnp.asarray(TIMESCALES, jnp.float32) - 1.0)


def _normalize(x: jax.Array, axes: tuple[int, ...], eps: float = 1e-5) -> jax.Array:
  return x * jax.lax.rsqrt(eps + jnp.mean(jnp.square(x), axis=axes, keepdims=True))


def mlp_rule(
  hidden_size: int = 32,
  hidden_layers: int = 2,
  exp_mult: float = 1e-3,
  step_mult: float = 1e-3,
  learning_rate: float = 0.01,
) -> LearnedRule:
  """The per-parameter MLP rule (see the module docstring).

  Meta-params: ``{'mlp': [{'w', 'b'} per layer], 'learning_rate': scalar}``;
  ``meta_init`` draws the MLP's weights (LeCun normal, zero biases) and sets the SGD
  path's rate to ``learning_rate``.
  """
  hidden = check_positive_int(hidden_size, 'hidden_size')
  depth = check_positive_int(hidden_layers, 'hidden_layers')
  exp_mult = check_positive_real(exp_mult, 'exp_mult')
  step_mult = check_positive_real(step_mult, 'step_mult')
  lr0 = check_positive_real(learning_rate, 'learning_rate', allow_zero=True)
  sizes = [NUM_FEATURES] + [hidden] * depth + [2]

  def meta_init(key: jax.Array):
    keys = jax.random.split(key, len(sizes) - 1)
    layers = [
      {
        'w': jax.random.normal(k, (n_in, n_out)) / np.sqrt(n_in),
        'b': jnp.zeros((n_out,)),
      }
      for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]
    return {'mlp': layers, 'learning_rate': jnp.full((), lr0)}

  def init(meta_params, params):
    del meta_params
    momentum = jax.tree.map(
      lambda x: jnp.zeros(jnp.shape(x) + (len(DECAYS),), jnp.result_type(x)), params
    )
    return MLPState(momentum, jnp.zeros((), jnp.int32))

  def check_state(state, params):
    if not isinstance(state, MLPState):
      raise ValueError(
        f'the MLP rule state must be an MLPState (from its init), got '
        f'{type(state).__name__}.'
      )
    check_state_matches(state.momentum, params, (len(DECAYS),), 'momentum state')
    if np.shape(state.step) != ():
      raise ValueError(
        f'the MLP rule step must be a scalar, got shape {np.shape(state.step)}.'
      )

  def mlp(layers, x):
    for layer in layers[:-1]:
      x = jax.nn.relu(x @ layer['w'] + layer['b'])
    return x @ layers[-1]['w'] + layers[-1]['b']

  def update_leaf(meta_params, time, g, p, m):
    shape = jnp.shape(g)
    decays = jnp.asarray(DECAYS, g.dtype)
    m = decays * m + (1 - decays) * g[..., None]
    g1, p1, m1 = (jnp.reshape(x, (1,) + x.shape) if not shape else x for x in (g, p, m))
    features = jnp.concatenate([g1[..., None], p1[..., None], m1], axis=-1)
    features = _normalize(features, tuple(range(features.ndim - 1)))
    time = jnp.broadcast_to(
      time.astype(features.dtype), features.shape[:-1] + time.shape
    )
    out = mlp(meta_params['mlp'], jnp.concatenate([features, time], axis=-1))
    direction, magnitude = out[..., 0], out[..., 1]
    learned = direction * jnp.exp(magnitude * exp_mult) * step_mult
    lr = meta_params['learning_rate'].astype(g.dtype)
    update = -lr * g - jnp.reshape(learned, shape).astype(g.dtype)
    return update, m

  def update(meta_params, grads, state, params):
    check_state(state, params)
    check_state_matches(grads, params, (), 'gradient tree')
    time = step_features(state.step)
    treedef = jax.tree.structure(params)
    pairs = [
      update_leaf(meta_params, time, g, p, m)
      for g, p, m in zip(
        jax.tree.leaves(grads),
        jax.tree.leaves(params),
        jax.tree.leaves(state.momentum),
        strict=True,
      )
    ]
    updates = jax.tree.unflatten(treedef, [u for u, _ in pairs])
    momentum = jax.tree.unflatten(treedef, [m for _, m in pairs])
    return updates, MLPState(momentum, state.step + 1)

  return LearnedRule('mlp', meta_init, init, update)


def sgd_meta_params(rule: LearnedRule, learning_rate: float):
  """Meta-params of ``mlp_rule`` that make it plain SGD at ``learning_rate``:
  every MLP weight and bias zero, the SGD path's rate ``learning_rate``.

  ``rule.update`` then returns exactly ``-learning_rate * g``, as
  ``optax.sgd(learning_rate)`` does (the MLP's output is 0: every product with a
  zero weight is 0).
  """
  if rule.name != 'mlp':
    raise ValueError(f'sgd_meta_params needs an mlp_rule, got the {rule.name!r} rule.')
  lr = check_positive_real(learning_rate, 'learning_rate')
  template = jax.eval_shape(rule.meta_init, jax.random.key(0))
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), template)
  return {**zeros, 'learning_rate': jnp.full((), lr)}
