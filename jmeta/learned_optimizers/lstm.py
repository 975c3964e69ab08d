"""The coordinatewise LSTM optimizer of Andrychowicz et al. (2016).

"Learning to learn by gradient descent by gradient descent", Sec. 2.1 and 3: one
small LSTM, shared by every coordinate of the optimizee, reads that coordinate's
gradient and outputs its update. Each coordinate keeps its own hidden and cell
state. Two LSTM layers of 20 units; the gradient is preprocessed (their Appendix A)
into two inputs,

  (log|g| / p, sign g)  if |g| >= exp(-p),   (-1, exp(p) g)  otherwise,   p = 10,

and the LSTM's linear read-out is scaled by 0.1: theta_{t+1} = theta_t + 0.1 m(g_t).

Example::

  rule = lstm_rule()
  opt = as_optimizer(rule, rule.meta_init(jax.random.key(0)))  # an optax transformation
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jmeta.learned_optimizers.base import LearnedRule, check_state_matches
from jmeta.validation import check_positive_int, check_positive_real


class LSTMState(NamedTuple):
  """Per-coordinate LSTM state: trees like the params, each leaf of shape
  ``param.shape + (layers, hidden)``."""

  hidden: Any
  cell: Any


def preprocess_gradient(g: jax.Array, p: float = 10.0) -> jax.Array:
  """Andrychowicz et al.'s two inputs per coordinate, shape ``g.shape + (2,)``.

  Differentiable: the log is taken of max(|g|, e^-p), so the branch not chosen
  contributes no infinite or NaN derivative.
  """
  threshold = jnp.exp(-p)
  big = jnp.abs(g) >= threshold
  safe_abs = jnp.maximum(jnp.abs(g), threshold)
  first = jnp.where(big, jnp.log(safe_abs) / p, -1.0)
  second = jnp.where(big, jnp.sign(g), jnp.exp(p) * g)
  return jnp.stack([first, second], axis=-1).astype(g.dtype)


def lstm_cell(weights, x, h, c):
  """One LSTM step on a batch of coordinates: x (n, in), h and c (n, hidden)."""
  gates = jnp.concatenate([x, h], axis=-1) @ weights['w'] + weights['b']
  i, f, g, o = jnp.split(gates, 4, axis=-1)
  c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  h = jax.nn.sigmoid(o) * jnp.tanh(c)
  return h, c


def lstm_rule(
  hidden_size: int = 20,
  layers: int = 2,
  preprocess_p: float = 10.0,
  output_scale: float = 0.1,
) -> LearnedRule:
  """The coordinatewise LSTM rule (see the module docstring); the paper's defaults.

  Meta-params: ``{'lstm': [{'w', 'b'} per layer], 'out': {'w', 'b'}}``; the gate
  weights of layer l map ``[input, h]`` to the four gates (input, forget, cell,
  output), the forget bias starting at 1.
  """
  hidden = check_positive_int(hidden_size, 'hidden_size')
  layers = check_positive_int(layers, 'layers')
  p = check_positive_real(preprocess_p, 'preprocess_p')
  scale = check_positive_real(output_scale, 'output_scale')

  def meta_init(key: jax.Array):
    keys = jax.random.split(key, layers + 1)
    cells = []
    for layer in range(layers):
      fan_in = (2 if layer == 0 else hidden) + hidden
      bound = 1.0 / jnp.sqrt(hidden)
      w = jax.random.uniform(
        keys[layer], (fan_in, 4 * hidden), minval=-bound, maxval=bound
      )
      b = jnp.zeros((4 * hidden,)).at[hidden : 2 * hidden].set(1.0)
      cells.append({'w': w, 'b': b})
    bound = 1.0 / jnp.sqrt(hidden)
    out = {
      'w': jax.random.uniform(keys[-1], (hidden, 1), minval=-bound, maxval=bound),
      'b': jnp.zeros((1,)),
    }
    return {'lstm': cells, 'out': out}

  def init(meta_params, params):
    del meta_params
    zeros = jax.tree.map(
      lambda x: jnp.zeros(jnp.shape(x) + (layers, hidden), jnp.result_type(x)), params
    )
    return LSTMState(zeros, zeros)

  def check_state(state, params):
    if not isinstance(state, LSTMState):
      raise ValueError(
        f'the LSTM rule state must be an LSTMState (from its init), got '
        f'{type(state).__name__}.'
      )
    for tree, what in (
      (state.hidden, 'LSTM hidden state'),
      (state.cell, 'LSTM cell state'),
    ):
      check_state_matches(tree, params, (layers, hidden), what)

  def update_leaf(meta_params, g, h, c):
    shape = jnp.shape(g)
    x = preprocess_gradient(jnp.reshape(g, (-1,)), p)
    h = jnp.reshape(h, (-1, layers, hidden))
    c = jnp.reshape(c, (-1, layers, hidden))
    new_h, new_c = [], []
    for layer, weights in enumerate(meta_params['lstm']):
      hl, cl = lstm_cell(weights, x, h[:, layer], c[:, layer])
      new_h.append(hl)
      new_c.append(cl)
      x = hl
    out = x @ meta_params['out']['w'] + meta_params['out']['b']
    update = scale * jnp.reshape(out, shape)
    stack = lambda s: jnp.reshape(jnp.stack(s, axis=1), shape + (layers, hidden))  # noqa: E731
    return update.astype(g.dtype), stack(new_h), stack(new_c)

  def update(meta_params, grads, state, params):
    check_state(state, grads)
    if params is not None:
      check_state_matches(grads, params, (), 'gradient tree')
    treedef = jax.tree.structure(grads)
    triples = [
      update_leaf(meta_params, g, h, c)
      for g, h, c in zip(
        jax.tree.leaves(grads),
        jax.tree.leaves(state.hidden),
        jax.tree.leaves(state.cell),
        strict=True,
      )
    ]
    updates, hs, cs = (jax.tree.unflatten(treedef, list(x)) for x in zip(*triples))
    return updates, LSTMState(hs, cs)

  return LearnedRule('lstm', meta_init, init, update)
