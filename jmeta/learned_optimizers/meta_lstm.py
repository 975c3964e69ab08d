"""The meta-LSTM learner of Ravi & Larochelle (2017), as a meta-learned inner rule.

"Optimization as a model for few-shot learning": the learner's parameters theta_t
are the cell state c_t of an LSTM applied to every coordinate (weights shared
across coordinates),

  c_t = f_t * c_{t-1} + i_t * (-g_t),   theta_t = c_t,   c_0 = theta_0 (learned),

with g_t the support gradient at theta_{t-1}. As in the reference code
(twitter/meta-learning-lstm, ``model/lstm/meta-learner-lstm.lua``), the gates read
the output h_t of a first, ordinary coordinatewise LSTM (``hidden_size`` units)
whose input is the preprocessed loss and gradient (Andrychowicz et al., 2016,
``preprocess_gradient``, p = 10), loss first:

  h_t = LSTM([pre(L_t), pre(g_t)], h_{t-1}),
  f_t = sigmoid(W_F [h_t, theta_{t-1}, a^F_{t-1}] + b_F),
  i_t = sigmoid(W_I [h_t, theta_{t-1}, a^I_{t-1}] + b_I),

where a_{t-1} is the previous gate's pre-activation (what the reference stores and
feeds back; the paper's formula writes the gate value), zero at t = 1. The cell
update uses the raw gradient. Initialisation as the reference: every weight
U(-0.01, 0.01), b_F ~ U(4, 5) and b_I ~ U(-5, -4), so that the rule starts as
gradient descent at a small rate.

As an optax transformation the update is u = (f_t - 1) theta_{t-1} - i_t g_t,
applied as theta_t = theta_{t-1} + u; it reads the step's loss as optax's extra
argument ``value``, which ``jmeta.inner_loop.scan_inner_loop`` passes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jmeta.inner_rules import InnerRule
from jmeta.learned_optimizers.base import check_state_matches
from jmeta.learned_optimizers.lstm import lstm_cell, preprocess_gradient
from jmeta.validation import check_positive_int, check_positive_real

GATES = ('forget', 'input')


class MetaLSTMState(NamedTuple):
  """Per-coordinate state, trees like the params.

  ``hidden`` and ``cell``: the first LSTM's, each leaf ``param.shape +
  (hidden_size,)``; ``forget`` and ``input``: the previous gates' pre-activations,
  each leaf ``param.shape``.
  """

  hidden: Any
  cell: Any
  forget: Any
  input: Any


def _check_range(bounds: Any, name: str) -> tuple[float, float]:
  try:
    low, high = (float(b) for b in bounds)
  except (TypeError, ValueError):
    raise ValueError(
      f'{name} must be a pair (low, high) of numbers, got {bounds!r}.'
    ) from None
  if not low <= high:
    raise ValueError(f'{name} must have low <= high, got {bounds!r}.')
  return low, high


def meta_lstm_params(
  key: jax.Array,
  hidden_size: int = 20,
  forget_bias: tuple[float, float] = (4.0, 5.0),
  input_bias: tuple[float, float] = (-5.0, -4.0),
  weight_scale: float = 0.01,
) -> dict:
  """The rule's weights, drawn as the reference does (see the module docstring).

  ``{'lstm': {'w': (4 + H, 4H), 'b': (4H,)}, 'forget': {'w': (H + 2,), 'b': ()},
  'input': ...}``; the first LSTM's gates are ordered (input, forget, cell, output).
  """
  hidden = check_positive_int(hidden_size, 'hidden_size')
  scale = check_positive_real(weight_scale, 'weight_scale', allow_zero=True)
  ranges = {
    'forget': _check_range(forget_bias, 'forget_bias'),
    'input': _check_range(input_bias, 'input_bias'),
  }
  keys = jax.random.split(key, 6)

  def uniform(k, shape, low=-scale, high=scale):
    return jax.random.uniform(k, shape, minval=low, maxval=high)

  params = {
    'lstm': {
      'w': uniform(keys[0], (4 + hidden, 4 * hidden)),
      'b': uniform(keys[1], (4 * hidden,)),
    }
  }
  for n, gate in enumerate(GATES):
    params[gate] = {
      'w': uniform(keys[2 + 2 * n], (hidden + 2,)),
      'b': uniform(keys[3 + 2 * n], (), *ranges[gate]),
    }
  return params


def _check_rule_params(rule_params: Any) -> int:
  """The hidden size of well-formed rule params; ValueError otherwise."""
  try:
    w = rule_params['lstm']['w']
    shapes = {
      'lstm.b': jnp.shape(rule_params['lstm']['b']),
      **{f'{g}.w': jnp.shape(rule_params[g]['w']) for g in GATES},
      **{f'{g}.b': jnp.shape(rule_params[g]['b']) for g in GATES},
    }
  except (KeyError, TypeError, IndexError):
    raise ValueError(
      'the meta-LSTM rule params must be the dict of meta_lstm_params (keys '
      f"'lstm', 'forget', 'input'), got {jax.tree.structure(rule_params)}."
    ) from None
  hidden = jnp.shape(w)[1] // 4 if jnp.ndim(w) == 2 else 0
  expected = {
    'lstm.b': (4 * hidden,),
    **{f'{g}.w': (hidden + 2,) for g in GATES},
    **{f'{g}.b': () for g in GATES},
  }
  if hidden < 1 or jnp.shape(w) != (4 + hidden, 4 * hidden) or shapes != expected:
    raise ValueError(
      f'the meta-LSTM rule params have shapes lstm.w {jnp.shape(w)}, {shapes}; '
      f'for H hidden units they are lstm.w (4 + H, 4H), {expected} (H = '
      f'{hidden}). Build them with meta_lstm_params(key, hidden_size).'
    )
  return hidden


def meta_lstm_optimizer(
  rule_params: dict, preprocess_p: float = 10.0
) -> optax.GradientTransformationExtraArgs:
  """The meta-LSTM with ``rule_params`` fixed: ``update(grads, state, params, *,
  value)``, ``value`` being the loss at ``params``. Differentiable in
  ``rule_params``."""
  hidden = _check_rule_params(rule_params)
  p = check_positive_real(preprocess_p, 'preprocess_p')

  def init(params):
    def zeros(trailing):
      return jax.tree.map(
        lambda x: jnp.zeros(jnp.shape(x) + trailing, jnp.result_type(x)), params
      )

    return MetaLSTMState(zeros((hidden,)), zeros((hidden,)), zeros(()), zeros(()))

  def gate(name, h, theta, previous):
    weights = rule_params[name]
    # [h, theta, previous] @ w without materialising the concatenation.
    w = weights['w']
    return h @ w[:hidden] + theta * w[hidden] + previous * w[hidden + 1] + weights['b']

  def update_leaf(loss, g, theta, h, c, f_prev, i_prev):
    shape, n = jnp.shape(g), jnp.size(g)
    flat = lambda x: jnp.reshape(x, (n,) + jnp.shape(x)[len(shape) :])  # noqa: E731
    g, theta, f_prev, i_prev = flat(g), flat(theta), flat(f_prev), flat(i_prev)
    x = jnp.concatenate(
      [
        jnp.broadcast_to(preprocess_gradient(jnp.reshape(loss, (1,)), p), (n, 2)),
        preprocess_gradient(g, p),
      ],
      axis=-1,
    ).astype(g.dtype)
    h, c = lstm_cell(rule_params['lstm'], x, flat(h), flat(c))
    f_pre = gate('forget', h, theta, f_prev)
    i_pre = gate('input', h, theta, i_prev)
    # (f - 1) theta, not f theta - theta: exactly 0 where f saturates at 1, so
    # such a rule is bit-for-bit SGD at rate i.
    update = (jax.nn.sigmoid(f_pre) - 1) * theta - jax.nn.sigmoid(i_pre) * g
    back = lambda x: jnp.reshape(x, shape + jnp.shape(x)[1:]).astype(g.dtype)  # noqa: E731
    return tuple(map(back, (update, h, c, f_pre, i_pre)))

  def update(grads, state, params=None, *, value=None, **extra_args):
    del extra_args
    if params is None or value is None:
      raise ValueError(
        'the meta-LSTM rule needs the params and the loss at them: '
        'update(grads, state, params, value=loss) (jmeta.inner_loop.'
        'scan_inner_loop passes both).'
      )
    if jnp.ndim(value) != 0:
      raise ValueError(
        f'value must be the scalar loss at params, got shape {jnp.shape(value)}.'
      )
    _check_state(state, grads, hidden)
    check_state_matches(grads, params, (), 'gradient tree')
    treedef = jax.tree.structure(grads)
    leaves = [
      update_leaf(value, *xs)
      for xs in zip(
        jax.tree.leaves(grads),
        jax.tree.leaves(params),
        *(jax.tree.leaves(tree) for tree in state),
        strict=True,
      )
    ]
    updates, *new = (jax.tree.unflatten(treedef, list(x)) for x in zip(*leaves))
    return updates, MetaLSTMState(*new)

  return optax.GradientTransformationExtraArgs(init, update)


def _check_state(state: Any, grads: Any, hidden: int) -> None:
  if not isinstance(state, MetaLSTMState):
    raise ValueError(
      'the meta-LSTM rule state must be a MetaLSTMState (from its init), got '
      f'{type(state).__name__}.'
    )
  for tree, trailing, what in (
    (state.hidden, (hidden,), 'meta-LSTM hidden state'),
    (state.cell, (hidden,), 'meta-LSTM cell state'),
    (state.forget, (), 'previous forget gate'),
    (state.input, (), 'previous input gate'),
  ):
    check_state_matches(tree, grads, trailing, what)


def meta_lstm_rule(
  hidden_size: int = 20,
  *,
  seed: int = 0,
  forget_bias: tuple[float, float] = (4.0, 5.0),
  input_bias: tuple[float, float] = (-5.0, -4.0),
  preprocess_p: float = 10.0,
) -> InnerRule:
  """The meta-LSTM as a ``jmeta.inner_rules.InnerRule`` (see the module docstring).

  Its rule params start at ``meta_lstm_params(jax.random.key(seed), ...)``; a
  gradient learner meta-trains them with theta_0 = c_0, the model's init.
  """
  hidden = check_positive_int(hidden_size, 'hidden_size')
  if isinstance(seed, bool) or not isinstance(seed, int):
    raise ValueError(f'seed must be a Python int, got {seed!r}.')
  ranges = (
    _check_range(forget_bias, 'forget_bias'),
    _check_range(input_bias, 'input_bias'),
  )
  p = check_positive_real(preprocess_p, 'preprocess_p')

  def init(params):
    del params  # shared by every coordinate: no per-parameter shape
    return meta_lstm_params(jax.random.key(seed), hidden, *ranges)

  return InnerRule(init, lambda rp: meta_lstm_optimizer(rp, p), shared=True)
