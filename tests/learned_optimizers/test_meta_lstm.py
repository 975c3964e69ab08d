"""The meta-LSTM rule (Ravi & Larochelle, 2017): SGD as a special case, finite
differences through the rule, its preprocessing, and bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jmeta
from jmeta.gradient_learner import MetaParams, adapt_with_rule
from jmeta.learned_optimizers import (
  MetaLSTMState,
  meta_lstm_optimizer,
  meta_lstm_params,
  meta_lstm_rule,
  preprocess_gradient,
)

HIDDEN = 3


def sgd_like(rate, hidden=HIDDEN):
  """Rule params whose forget gate saturates at 1 and whose input gate is ``rate``:
  zero gate weights, so each gate is sigmoid of its bias."""
  params = meta_lstm_params(jax.random.key(0), hidden)
  return {
    **params,
    'forget': {'w': jnp.zeros(hidden + 2), 'b': jnp.asarray(50.0)},
    'input': {'w': jnp.zeros(hidden + 2), 'b': jnp.log(rate / (1 - rate))},
  }


def regression():
  model = jmeta.mlp((4,), 1, activation=jnp.tanh)
  x = jnp.linspace(-1.0, 1.0, 6)[:, None]
  y = jnp.sin(2 * x)
  return model, model.init(jax.random.key(1), x), x, y


def test_saturated_forget_gate_and_constant_input_gate_is_sgd_bit_for_bit():
  model, params, x, y = regression()
  objective = lambda p: jmeta.losses.mean_squared_error(model.apply(p, x), y)  # noqa: E731
  value_and_grad = jax.jit(jax.value_and_grad(objective))
  rule_params = sgd_like(0.3)
  assert float(jax.nn.sigmoid(rule_params['forget']['b'])) == 1.0
  rate = jax.nn.sigmoid(rule_params['input']['b'])
  ours, sgd = meta_lstm_rule(HIDDEN).optimizer(rule_params), optax.sgd(rate)
  phi, psi = params, params
  state, sgd_state = ours.init(phi), sgd.init(psi)
  for _ in range(4):
    value, grads = value_and_grad(phi)
    updates, state = ours.update(grads, state, phi, value=value)
    phi = optax.apply_updates(phi, updates)
    updates, sgd_state = sgd.update(value_and_grad(psi)[1], sgd_state, psi)
    psi = optax.apply_updates(psi, updates)
    chex.assert_trees_all_equal(phi, psi)
  # It moved: not the trivial equality of two no-ops.
  assert not np.allclose(phi['layer_0']['w'], params['layer_0']['w'])


def test_the_gradient_learner_runs_the_rule_like_jmeta_adapt_runs_sgd():
  model, params, x, y = regression()
  loss = jmeta.losses.mean_squared_error
  rule_params = sgd_like(0.3)
  rate = jax.nn.sigmoid(rule_params['input']['b'])
  ours, _, _ = adapt_with_rule(
    model, loss, meta_lstm_rule(HIDDEN), MetaParams(params, rule_params), x, y, steps=4
  )
  sgd = jmeta.adapt(model, loss, params, x, y, steps=4, learning_rate=rate)
  # Two compiled scans whose reductions XLA may order differently: float32 rounding
  # (the step itself is bit for bit, above).
  chex.assert_trees_all_close(ours, sgd, rtol=1e-6, atol=1e-7)


def random_direction(key, tree):
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(
    treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
  )


def test_second_order_meta_gradient_through_the_rule_matches_finite_differences():
  with jax.enable_x64(True):
    model, params, x, y = regression()
    to64 = lambda t: jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), t)  # noqa: E731
    # Weights large enough that every path (first LSTM, theta, previous gate) counts,
    # gates away from saturation.
    rule_params = meta_lstm_params(
      jax.random.key(2), HIDDEN, (1.0, 1.5), (-1.5, -1.0), weight_scale=0.5
    )
    meta = to64(MetaParams(params, rule_params))
    x, y = to64((x, y))
    loss = jmeta.losses.mean_squared_error
    rule = meta_lstm_rule(HIDDEN)

    @jax.jit
    def query_loss(meta):
      phi, _, _ = adapt_with_rule(model, loss, rule, meta, x, y, steps=3)
      return loss(model.apply(phi, x + 0.5), y)

    grad = jax.jit(jax.grad(query_loss))(meta)
    direction = random_direction(jax.random.key(3), meta)
    eps = 1e-6
    shifted = lambda s: jax.tree.map(lambda p, d: p + s * d, meta, direction)  # noqa: E731
    fd = (query_loss(shifted(eps)) - query_loss(shifted(-eps))) / (2 * eps)
    leaves = zip(jax.tree.leaves(grad), jax.tree.leaves(direction))
    analytic = sum(jnp.vdot(g, d) for g, d in leaves)
    np.testing.assert_allclose(analytic, fd, rtol=1e-6)
    # Every part of the rule gets a gradient.
    for name, g in jax.tree_util.tree_flatten_with_path(grad.rule)[0]:
      assert float(jnp.max(jnp.abs(g))) > 0, jax.tree_util.keystr(name)


@pytest.mark.parametrize('first_order', [False, True])
def test_sgd_like_rule_gives_maml_and_fomaml_init_gradients(first_order):
  """With f = 1 and i constant, d theta_T / d theta_0 is MAML's (second order) or
  the identity (the paper's first order), so the init gradient is (FO)MAML's."""
  with jax.enable_x64(True):
    model = jmeta.mlp((5,), 1, activation=jnp.tanh)
    batch = jmeta.sinusoid_tasks(4, 4, dtype=jnp.float64).sample(jax.random.key(0), 3)
    params = jax.tree.map(
      lambda p: p.astype(jnp.float64),
      model.init(jax.random.key(1), batch.support_inputs[0]),
    )
    rule_params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), sgd_like(0.2))
    loss = jmeta.losses.mean_squared_error
    ours = jmeta.meta_lstm(
      model, loss, inner_steps=2, hidden_size=HIDDEN, first_order=first_order
    ).meta_gradient(MetaParams(params, rule_params), batch)
    rate = float(jax.nn.sigmoid(rule_params['input']['b']))
    theirs = jmeta.maml(
      model, loss, inner_steps=2, inner_learning_rate=rate, first_order=first_order
    ).meta_gradient(params, batch)
    chex.assert_trees_all_close(ours.grads.init, theirs.grads, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ours.metrics['loss'], theirs.metrics['loss'], rtol=1e-12)


@pytest.mark.parametrize('p', [10.0, 4.0])
def test_preprocessing_matches_its_formula_on_both_branches(p):
  g = jnp.array([3.0, -0.5, 2 * np.exp(-p), -0.5 * np.exp(-p), 0.0])
  got = np.asarray(preprocess_gradient(g, p))
  big = np.abs(np.asarray(g)) >= np.exp(-p)
  assert big.tolist() == [True, True, True, False, False]
  expected = np.where(
    big[:, None],
    np.stack([np.log(np.abs(g) + (~big)) / p, np.sign(g)], -1),
    np.stack([-np.ones(5), np.exp(p) * np.asarray(g)], -1),
  )
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_init_and_update_shapes():
  params = {'a': jnp.zeros((2, 3)), 'b': jnp.zeros(4)}
  opt = meta_lstm_optimizer(meta_lstm_params(jax.random.key(0), HIDDEN))
  state = opt.init(params)
  assert isinstance(state, MetaLSTMState)
  assert state.hidden['a'].shape == (2, 3, HIDDEN)
  assert state.cell['b'].shape == (4, HIDDEN)
  assert state.forget['a'].shape == (2, 3) and state.input['b'].shape == (4,)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, new = opt.update(grads, state, params, value=jnp.asarray(1.0))
  chex.assert_trees_all_equal_shapes(updates, params)
  chex.assert_trees_all_equal_shapes(new, state)
  chex.assert_tree_all_finite(updates)
  rule = meta_lstm_rule(HIDDEN, seed=3)
  chex.assert_trees_all_equal(
    rule.init(params), meta_lstm_params(jax.random.key(3), HIDDEN)
  )
  assert rule.shared
  biases = meta_lstm_params(jax.random.key(0), 20)
  assert 4 <= float(biases['forget']['b']) <= 5
  assert -5 <= float(biases['input']['b']) <= -4


def test_bad_inputs_are_refused():
  params = {'w': jnp.zeros(3)}
  rule_params = meta_lstm_params(jax.random.key(0), HIDDEN)
  opt = meta_lstm_optimizer(rule_params)
  state = opt.init(params)
  with pytest.raises(ValueError, match='value=loss'):
    opt.update(params, state, params)
  with pytest.raises(ValueError, match='value=loss'):
    opt.update(params, state, None, value=1.0)
  with pytest.raises(ValueError, match=r'scalar loss at params, got shape \(2,\)'):
    opt.update(params, state, params, value=jnp.ones(2))
  with pytest.raises(ValueError, match='must be a MetaLSTMState'):
    opt.update(params, optax.EmptyState(), params, value=1.0)
  with pytest.raises(ValueError, match=r"previous forget gate of parameter \['w'\]"):
    opt.update(params, state._replace(forget={'w': jnp.zeros(4)}), params, value=1.0)
  with pytest.raises(ValueError, match="keys 'lstm', 'forget', 'input'"):
    meta_lstm_optimizer({'lstm': rule_params['lstm']})
  bad = {**rule_params, 'input': {'w': jnp.zeros(7), 'b': jnp.zeros(())}}
  with pytest.raises(ValueError, match=r'for H hidden units'):
    meta_lstm_optimizer(bad)
  with pytest.raises(ValueError, match='hidden_size must be'):
    meta_lstm_rule(0)
  with pytest.raises(ValueError, match='low <= high'):
    meta_lstm_rule(input_bias=(0.0, -1.0))
  with pytest.raises(ValueError, match='pair'):
    meta_lstm_rule(forget_bias=4.0)
  with pytest.raises(ValueError, match='seed must be a Python int'):
    meta_lstm_rule(seed=1.5)
