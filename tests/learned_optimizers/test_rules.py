"""Learned rules: SGD bit for bit, derivatives against finite differences, scan
against a Python loop, and the errors for a state that does not fit the params."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jmeta
from jmeta import learned_optimizers as lopt

FAMILY = lopt.quadratics(3)
RULES = {
  'lstm': lambda: lopt.lstm_rule(hidden_size=4),
  'mlp': lambda: lopt.mlp_rule(8, 1),
}


def test_mlp_rule_with_sgd_meta_params_is_plain_sgd_bit_for_bit():
  """Given the same gradients, every step is SGD's to the bit, so a step-by-step
  unroll follows SGD's trajectory exactly. (Inside one compiled scan XLA may fuse
  the optimizee's gradient differently around the two rules; there they agree to
  float32 rounding, checked last.)"""
  rule = lopt.mlp_rule()
  meta = lopt.sgd_meta_params(rule, 0.01)
  learned, sgd = lopt.as_optimizer(rule, meta), optax.sgd(0.01)
  state = lopt.init_inner_state(sgd, FAMILY, jax.random.key(0))
  grad = jax.jit(jax.grad(FAMILY.loss, argnums=1))
  trajectories = []
  for opt in (learned, sgd):
    step = jax.jit(lambda p, s, o=opt: o.update(grad(state.task, p), s, p))
    params, opt_state, path = state.params, opt.init(state.params), []
    for _ in range(20):
      updates, opt_state = step(params, opt_state)
      params = optax.apply_updates(params, updates)
      path.append(params)
    trajectories.append(np.stack(path))
  np.testing.assert_array_equal(*trajectories)
  params = {'w': jnp.arange(3.0), 'b': jnp.ones((2, 2))}
  grads = jax.tree.map(lambda p: jnp.sin(3 * p + 1), params)
  ours, _ = learned.update(grads, learned.init(params), params)
  theirs, _ = sgd.update(grads, sgd.init(params), params)
  jax.tree.map(np.testing.assert_array_equal, ours, theirs)
  key = jax.random.key(1)
  curves = [
    lopt.loss_curves(opt, FAMILY, key, steps=20, num_tasks=4) for opt in (learned, sgd)
  ]
  np.testing.assert_allclose(*curves, rtol=1e-6)


@pytest.mark.parametrize('name', sorted(RULES))
def test_meta_gradient_through_the_rule_matches_finite_differences(name, x64):
  rule = RULES[name]()
  meta = rule.meta_init(jax.random.key(1))
  state = lopt.init_inner_state(
    lopt.as_optimizer(rule, meta), FAMILY, jax.random.key(2)
  )

  def meta_loss(meta):
    _, losses = lopt.unroll(lopt.as_optimizer(rule, meta), FAMILY, state, 4)
    return jnp.mean(losses)

  grad = jax.grad(meta_loss)(meta)
  leaves, treedef = jax.tree.flatten(meta)
  keys = jax.random.split(jax.random.key(3), len(leaves))
  direction = jax.tree.unflatten(
    treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
  )
  h = 1e-6
  shifted = lambda s: jax.tree.map(lambda m, d: m + s * h * d, meta, direction)  # noqa: E731
  numeric = (meta_loss(shifted(1)) - meta_loss(shifted(-1))) / (2 * h)
  analytic = sum(
    jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(direction))
  )
  assert meta_loss(meta).dtype == jnp.float64
  np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


@pytest.mark.parametrize('name', sorted(RULES))
def test_unroll_in_scan_equals_a_python_loop(name):
  rule = RULES[name]()
  opt = lopt.as_optimizer(rule, rule.meta_init(jax.random.key(4)))
  state = lopt.init_inner_state(opt, FAMILY, jax.random.key(5))
  final, losses = lopt.unroll(opt, FAMILY, state, 6)
  params, opt_state = state.params, state.opt_state
  expected = []
  for _ in range(6):
    grads = jax.grad(FAMILY.loss, argnums=1)(state.task, params)
    updates, opt_state = opt.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    expected.append(FAMILY.loss(state.task, params))
  np.testing.assert_allclose(losses, expected, rtol=1e-5)
  np.testing.assert_allclose(final.params, params, rtol=1e-5, atol=1e-6)
  assert int(final.step) == 6


def test_learned_rule_drives_jmeta_adapt_and_is_an_inner_rule():
  rule = lopt.mlp_rule(8, 1)
  meta = lopt.sgd_meta_params(rule, 0.1)
  model = jmeta.mlp([4], 1)
  x = jnp.linspace(-1, 1, 8)[:, None]
  y = jnp.sin(x)
  params = model.init(jax.random.key(0), x)
  loss = jmeta.losses.mean_squared_error
  ours = jmeta.adapt(
    model, loss, params, x, y, steps=3, optimizer=lopt.as_optimizer(rule, meta)
  )
  sgd = jmeta.adapt(model, loss, params, x, y, steps=3, learning_rate=0.1)
  # One compiled scan each: equal to float32 rounding (see the bit-for-bit test).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), ours, sgd)
  inner = lopt.as_inner_rule(rule, meta)
  assert inner.init(params) is meta


@pytest.mark.parametrize('name', sorted(RULES))
def test_a_state_for_other_params_is_refused(name):
  rule = RULES[name]()
  opt = lopt.as_optimizer(rule, rule.meta_init(jax.random.key(0)))
  params = {'w': jnp.zeros(3)}
  state = opt.init({'w': jnp.zeros(4)})
  with pytest.raises(ValueError, match=r"of parameter \['w'\] has shape \(4,"):
    opt.update(params, state, params)
  state = opt.init({'v': jnp.zeros(3)})
  with pytest.raises(ValueError, match='does not match the params'):
    opt.update(params, state, params)
  with pytest.raises(ValueError, match='state must be an'):
    opt.update(params, optax.EmptyState(), params)


def test_bad_meta_params_and_missing_params_are_refused():
  rule = lopt.lstm_rule()
  meta = rule.meta_init(jax.random.key(0))
  with pytest.raises(ValueError, match='do not fit the lstm rule'):
    lopt.as_optimizer(rule, {'lstm': meta['lstm']})
  bad = {**meta, 'out': {'w': jnp.zeros((3, 1)), 'b': jnp.zeros(1)}}
  with pytest.raises(
    ValueError, match=r"\['out'\]\['w'\] of the lstm rule has shape \(3, 1\)"
  ):
    lopt.as_optimizer(rule, bad)
  mlp = lopt.mlp_rule()
  opt = lopt.as_optimizer(mlp, mlp.meta_init(jax.random.key(0)))
  params = jnp.zeros(3)
  with pytest.raises(ValueError, match='needs the params'):
    opt.update(params, opt.init(params))
  with pytest.raises(ValueError, match='needs an mlp_rule'):
    lopt.sgd_meta_params(rule, 0.1)


def test_gradient_preprocessing_of_andrychowicz_et_al():
  g = jnp.array([1.0, -0.5, 1e-6, -1e-6, 0.0])
  x = lopt.preprocess_gradient(g)
  np.testing.assert_allclose(x[:2, 0], np.log([1.0, 0.5]) / 10, rtol=1e-6)
  np.testing.assert_array_equal(x[:2, 1], [1.0, -1.0])
  np.testing.assert_array_equal(x[2:, 0], [-1.0, -1.0, -1.0])
  np.testing.assert_allclose(
    x[2:, 1], np.exp(10) * np.array([1e-6, -1e-6, 0.0]), rtol=1e-6
  )
  d = jax.jacfwd(lopt.preprocess_gradient)(g)
  assert np.all(np.isfinite(d))
