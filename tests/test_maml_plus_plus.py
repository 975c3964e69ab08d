"""MAML++ against MAML, first-order MAML, Python-loop references, finite differences."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jmeta
from jmeta.algorithms.maml_plus_plus import (
  MAMLPlusPlusParams,
  maml_plus_plus,
  maml_plus_plus_adapt,
  maml_plus_plus_params,
  msl_weights,
)
from jmeta.losses import classification_metrics, cross_entropy, mean_squared_error

NUM_TASKS = 2
ALPHA = 0.1
BN = ('scale', 'bias')


def select_bn(path):
  return path[-1].key in BN


def mlp_setup(dtype=jnp.float64):
  """A tanh MLP, its params and a sinusoid batch (float64: call inside ``x64``)."""
  model = jmeta.mlp((5,), 1, activation=jnp.tanh)
  batch = jmeta.sinusoid_tasks(4, 5, dtype=dtype).sample(jax.random.key(0), NUM_TASKS)
  params = model.init(jax.random.key(1), batch.support_inputs[0])
  return model, jax.tree.map(lambda p: p.astype(dtype), params), batch


def conv4_setup(dtype=jnp.float64):
  """A 2-filter Conv4 on 8x8 images, 3-way 2-shot tasks."""
  model = jmeta.conv4(3, filters=2, conv_impl='xla')
  kx, kq, kp = jax.random.split(jax.random.key(3), 3)
  labels = jnp.tile(jnp.arange(3), (NUM_TASKS, 2))
  batch = jmeta.TaskBatch(
    jax.random.normal(kx, (NUM_TASKS, 6, 8, 8, 1), dtype),
    labels,
    jax.random.normal(kq, (NUM_TASKS, 6, 8, 8, 1), dtype),
    labels,
  )
  params = model.init(kp, batch.support_inputs[0])
  return model, jax.tree.map(lambda p: p.astype(dtype), params), batch


def random_like(key, tree, scale=1.0):
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(
    treedef,
    [scale * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)],
  )


def tree_vdot(a, b):
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def directional_fd(f, params, direction, h=1e-5):
  """Five-point central difference of f along direction: error O(h^4)."""

  def at(s):
    return f(jax.tree.map(lambda p, v: p + s * h * v, params, direction))

  return (-at(2) + 8 * at(1) - 8 * at(-1) + at(-2)) / (12 * h)


def msl_weights_numpy(t, k, n):
  """Antoniou et al.'s get_per_step_loss_importance_vector, then the final step only."""
  weights = np.ones(k) * (1.0 / k)
  if t >= n:
    weights[:] = 0.0
    weights[-1] = 1.0
    return weights
  decay_rate = 1.0 / k / n
  floor = 0.03 / k
  for i in range(k - 1):
    weights[i] = np.maximum(weights[i] - (t * decay_rate), floor)
  weights[-1] = np.minimum(
    weights[-1] + (t * (k - 1) * decay_rate), 1.0 - ((k - 1) * floor)
  )
  return weights


# --- Every option off: MAML itself --------------------------------------------------


@pytest.mark.parametrize('setup', ['mlp', 'conv4'])
def test_every_option_off_is_maml_bit_for_bit(setup):
  if setup == 'mlp':
    model, params, batch = mlp_setup(jnp.float32)
    loss, metrics_fn = mean_squared_error, None
  else:
    model, params, batch = conv4_setup(jnp.float32)
    loss, metrics_fn = cross_entropy, classification_metrics
  kwargs = dict(inner_steps=2, inner_learning_rate=ALPHA, metrics_fn=metrics_fn)
  ref = jax.jit(jmeta.maml(model, loss, **kwargs).meta_gradient)(params, batch)
  est = maml_plus_plus(model, loss, **kwargs)
  assert est.name == 'maml++'
  mp = maml_plus_plus_params(params, inner_steps=2)
  assert mp == MAMLPlusPlusParams(params, None, None)
  for got in (
    jax.jit(est.meta_gradient)(mp, batch),
    jax.jit(est.meta_gradient)(mp, batch, jnp.int32(0)),
  ):
    assert got.grads.learning_rates is None and got.grads.step_weights is None
    jax.tree.map(np.testing.assert_array_equal, got.grads.init, ref.grads)
    jax.tree.map(np.testing.assert_array_equal, got.metrics, ref.metrics)


# --- Learned per-layer, per-step rates ----------------------------------------------


def test_equal_learned_rates_give_mamls_init_gradient(x64):
  model, params, batch = mlp_setup()
  maml = jmeta.maml(model, mean_squared_error, inner_steps=2, inner_learning_rate=ALPHA)
  est = maml_plus_plus(model, mean_squared_error, inner_steps=2, learn_inner_rates=True)
  mp = maml_plus_plus_params(
    params, inner_steps=2, inner_learning_rate=ALPHA, learn_inner_rates=True
  )
  chex.assert_trees_all_equal_shapes(
    mp.learning_rates, jax.tree.map(lambda p: jnp.zeros(2), params)
  )
  ref = jax.jit(maml.meta_gradient)(params, batch)
  grad_fn = jax.jit(est.meta_gradient)
  got = grad_fn(mp, batch)
  chex.assert_trees_all_close(got.grads.init, ref.grads, rtol=1e-12, atol=1e-14)
  chex.assert_trees_all_close(got.metrics, ref.metrics, rtol=1e-12)

  # At distinct rates per tensor and step, the gradient against finite differences.
  key_lr, key_dir = jax.random.split(jax.random.key(2))
  rates = jax.tree.map(
    lambda r: r + 0.05 * jax.random.uniform(key_lr, r.shape, r.dtype), mp.learning_rates
  )
  mp = mp._replace(learning_rates=rates)
  grads, _ = grad_fn(mp, batch)
  meta_loss = jax.jit(lambda m: est.meta_gradient(m, batch).metrics['loss'])
  zeros = jax.tree.map(jnp.zeros_like, params)
  for k, key in enumerate(jax.random.split(key_dir, 2)):
    rate_dir = random_like(key, rates)
    init_dir = zeros if k == 0 else random_like(key, params)
    direction = MAMLPlusPlusParams(init_dir, rate_dir, None)
    fd = directional_fd(meta_loss, mp, direction)
    np.testing.assert_allclose(tree_vdot(grads, direction), fd, rtol=1e-6)


def test_adapt_with_equal_rates_is_adapt(x64):
  model, params, batch = mlp_setup()
  x, y = batch.support_inputs[0], batch.support_targets[0]
  ref = jmeta.adapt(model, mean_squared_error, params, x, y, steps=3, learning_rate=0.1)
  learned = maml_plus_plus_params(
    params, inner_steps=3, inner_learning_rate=0.1, learn_inner_rates=True
  )
  fixed = maml_plus_plus_params(params, inner_steps=3)
  for mp, rate in ((learned, None), (fixed, 0.1)):
    got = maml_plus_plus_adapt(
      model, mean_squared_error, mp, x, y, steps=3, inner_learning_rate=rate
    )
    chex.assert_trees_all_close(got, ref, rtol=1e-12, atol=1e-14)


# --- Multi-step loss ------------------------------------------------------------------


@pytest.mark.parametrize('k, n', [(1, 4), (2, 1), (3, 10), (5, 100)])
def test_msl_weights_match_numpy(x64, k, n):
  jitted = jax.jit(msl_weights, static_argnums=(1, 2))
  for t in sorted({0, 1, 2, n // 2, n - 2, n - 1, n, n + 1, 10 * n}):
    if t < 0:
      continue
    expected = msl_weights_numpy(t, k, n)
    np.testing.assert_array_equal(msl_weights(t, k, n), expected)
    # Compiled, XLA may fold the constants in another order: within an ulp.
    np.testing.assert_allclose(jitted(jnp.int32(t), k, n), expected, rtol=1e-15)
    np.testing.assert_allclose(np.sum(expected), 1.0, rtol=1e-14)
  np.testing.assert_array_equal(msl_weights(0, k, n), np.full(k, 1.0 / k))
  # Annealing reaches the floor 0.03/K before it ends (for K > 1, N >= 34).
  if k > 1 and n == 100:
    np.testing.assert_allclose(msl_weights(99, k, n)[:-1], 0.03 / k, rtol=1e-14)


def test_msl_weights_sum_to_one_in_float32():
  w = jax.jit(msl_weights, static_argnums=(1, 2))(jnp.int32(37), 5, 100)
  assert w.dtype == jnp.float32
  np.testing.assert_allclose(jnp.sum(w), 1.0, rtol=1e-6)


def test_msl_objective_is_a_weighted_sum_of_per_step_query_losses(x64):
  model, params, batch = mlp_setup()
  k, n, t = 3, 10, 4
  est = maml_plus_plus(
    model,
    mean_squared_error,
    inner_steps=k,
    inner_learning_rate=ALPHA,
    multi_step_loss=True,
    msl_anneal_iterations=n,
  )
  mp = maml_plus_plus_params(params, inner_steps=k)
  grads, metrics = jax.jit(est.meta_gradient)(mp, batch, jnp.int32(t))
  weights = msl_weights_numpy(t, k, n)
  assert np.all(weights[:-1] > 0.1)  # every step's loss really counts

  @jax.jit
  def reference(theta):
    total, final = 0.0, 0.0
    for i in range(NUM_TASKS):
      for j in range(1, k + 1):
        phi = jmeta.adapt(
          model,
          mean_squared_error,
          theta,
          batch.support_inputs[i],
          batch.support_targets[i],
          steps=j,
          learning_rate=ALPHA,
        )
        query = model.apply(phi, batch.query_inputs[i])
        loss = mean_squared_error(query, batch.query_targets[i])
        total += weights[j - 1] * loss
      final += loss
    return total / NUM_TASKS, final / NUM_TASKS

  (value, final), ref_grads = jax.value_and_grad(reference, has_aux=True)(params)
  np.testing.assert_allclose(metrics['objective'], value, rtol=1e-12)
  np.testing.assert_allclose(metrics['loss'], final, rtol=1e-12)
  chex.assert_trees_all_close(grads.init, ref_grads, rtol=1e-10, atol=1e-13)
  # After annealing (and in meta_gradient) the objective is the final-step loss.
  maml = jax.jit(
    jmeta.maml(
      model, mean_squared_error, inner_steps=k, inner_learning_rate=ALPHA
    ).meta_gradient
  )(params, batch)
  for got in (
    jax.jit(est.meta_gradient)(mp, batch, jnp.int32(n)),
    jax.jit(est.meta_gradient)(mp, batch),
  ):
    chex.assert_trees_all_close(got.grads.init, maml.grads, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got.metrics['objective'], maml.metrics['loss'])


# --- Derivative-order annealing -------------------------------------------------------


def test_derivative_order_annealing_switches_from_first_to_second_order(x64):
  model, params, batch = mlp_setup()
  kwargs = dict(inner_steps=2, inner_learning_rate=ALPHA)
  est = maml_plus_plus(
    model, mean_squared_error, derivative_order_annealing_iterations=3, **kwargs
  )
  first = jax.jit(jmeta.fomaml(model, mean_squared_error, **kwargs).meta_gradient)(
    params, batch
  )
  second = jax.jit(jmeta.maml(model, mean_squared_error, **kwargs).meta_gradient)(
    params, batch
  )
  assert not np.allclose(first.grads['layer_0']['w'], second.grads['layer_0']['w'])
  mp = maml_plus_plus_params(params, inner_steps=2)
  at = jax.jit(est.meta_gradient)
  # One branch per phase, chosen at run time: a cond, not a select of both.
  assert 'cond' in str(jax.make_jaxpr(est.meta_gradient)(mp, batch, jnp.int32(0)))
  for t, ref in ((0, first), (2, first), (3, second), (1000, second)):
    got = at(mp, batch, jnp.int32(t))
    chex.assert_trees_all_close(got.grads.init, ref.grads, rtol=1e-12, atol=1e-14)
  got = jax.jit(est.meta_gradient)(mp, batch)
  chex.assert_trees_all_close(got.grads.init, second.grads, rtol=1e-12, atol=1e-14)


def test_three_phases_of_both_schedules(x64):
  model, params, batch = mlp_setup()
  kwargs = dict(inner_steps=2, inner_learning_rate=ALPHA, multi_step_loss=True)
  both = maml_plus_plus(
    model,
    mean_squared_error,
    msl_anneal_iterations=4,
    derivative_order_annealing_iterations=2,
    **kwargs,
  )
  msl_only = maml_plus_plus(
    model, mean_squared_error, msl_anneal_iterations=4, **kwargs
  )
  mp = maml_plus_plus_params(params, inner_steps=2)
  at, ref = jax.jit(both.meta_gradient), jax.jit(msl_only.meta_gradient)
  grads = [at(mp, batch, jnp.int32(t)).grads.init for t in range(6)]
  for t in range(2, 6):  # second order from t = 2, the final-step loss from t = 4
    expected = ref(mp, batch, jnp.int32(t)).grads.init
    chex.assert_trees_all_close(grads[t], expected, rtol=1e-12, atol=1e-14)
  first = ref(mp, batch, jnp.int32(1)).grads.init
  assert not np.allclose(grads[1]['layer_0']['w'], first['layer_0']['w'])


# --- Per-step batch-norm weights ------------------------------------------------------


def test_equal_bn_copies_give_mamls_gradient(x64):
  model, params, batch = conv4_setup()
  # MAML++ does not adapt the per-step weights, so its counterpart is MAML with the
  # batch-norm weights frozen in the inner loop (plain MAML's gradients differ).
  labels = jax.tree_util.tree_map_with_path(
    lambda path, _: 'frozen' if select_bn(path) else 'adapt', params
  )
  frozen = optax.multi_transform(
    {'adapt': optax.sgd(ALPHA), 'frozen': optax.set_to_zero()}, labels
  )
  maml = jmeta.maml(model, cross_entropy, inner_steps=2, inner_optimizer=frozen)
  est = maml_plus_plus(
    model,
    cross_entropy,
    inner_steps=2,
    inner_learning_rate=ALPHA,
    per_step_bn_weights=select_bn,
  )
  mp = maml_plus_plus_params(params, inner_steps=2, per_step_bn_weights=select_bn)
  assert mp.init['block_0']['scale'] is None and mp.init['head']['w'] is not None
  assert mp.step_weights['block_1']['bias'].shape == (3, 2)
  assert mp.step_weights['block_1']['w'] is None
  ref = jax.jit(maml.meta_gradient)(params, batch)
  grad_fn = jax.jit(est.meta_gradient)
  got = grad_fn(mp, batch)
  adapted_leaves = jax.tree.map(
    lambda m, g: None if m is None else g,
    mp.init,
    ref.grads,
    is_leaf=lambda x: x is None,
  )
  chex.assert_trees_all_close(got.grads.init, adapted_leaves, rtol=1e-12, atol=1e-14)
  # Equal copies: MAML's gradient of a BN weight is the sum over its copies'.
  summed = jax.tree.map(
    lambda s, g: None if s is None else g,
    mp.step_weights,
    ref.grads,
    is_leaf=lambda x: x is None,
  )
  copies_sum = jax.tree.map(lambda g: jnp.sum(g, axis=0), got.grads.step_weights)
  chex.assert_trees_all_close(copies_sum, summed, rtol=1e-10, atol=1e-13)
  chex.assert_trees_all_close(got.metrics, ref.metrics, rtol=1e-12)

  # Distinct copies: the gradient against finite differences of the query loss
  # along them. (Along the init, ReLU kinks of this tiny net spoil the differences;
  # the init's gradient is checked against MAML's above.)
  k1, k2 = jax.random.split(jax.random.key(4))
  copies = jax.tree.map(
    lambda c: c + 0.3 * jax.random.normal(k1, c.shape), mp.step_weights
  )
  mp = mp._replace(step_weights=copies)
  grads, _ = grad_fn(mp, batch)
  meta_loss = lambda m: grad_fn(m, batch).metrics['loss']  # noqa: E731
  zeros = jax.tree.map(jnp.zeros_like, mp.init)
  for key in jax.random.split(k2, 2):
    direction = MAMLPlusPlusParams(zeros, None, random_like(key, copies))
    fd = directional_fd(meta_loss, mp, direction)
    np.testing.assert_allclose(tree_vdot(grads, direction), fd, rtol=1e-6)


def with_copy(init, step_weights, j):
  """The model's params with copy j of the per-step leaves (two-level dicts)."""
  return {
    name: {
      key: step_weights[name][key][j] if value is None else value
      for key, value in layer.items()
    }
    for name, layer in init.items()
  }


def test_every_option_against_a_python_loop_and_finite_differences(x64):
  # The MLP's biases stand in for batch-norm weights: any leaves can be per step.
  model, params, batch = mlp_setup()
  select = lambda path: path[-1].key == 'b'  # noqa: E731
  k, n, t = 2, 8, 3
  est = maml_plus_plus(
    model,
    mean_squared_error,
    inner_steps=k,
    multi_step_loss=True,
    msl_anneal_iterations=n,
    learn_inner_rates=True,
    per_step_bn_weights=select,
    remat=True,
  )
  mp = maml_plus_plus_params(
    params,
    inner_steps=k,
    inner_learning_rate=ALPHA,
    learn_inner_rates=True,
    per_step_bn_weights=select,
  )
  # Distinct copies and rates, so a wrong index would show.
  k1, k2, k3 = jax.random.split(jax.random.key(5), 3)
  copies = jax.tree.map(
    lambda c: c + 0.3 * jax.random.normal(k1, c.shape), mp.step_weights
  )
  rates = jax.tree.map(
    lambda r: r + 0.05 * jax.random.uniform(k2, r.shape), mp.learning_rates
  )
  mp = MAMLPlusPlusParams(mp.init, rates, copies)
  grad_fn = jax.jit(est.meta_gradient)
  grads, metrics = grad_fn(mp, batch, jnp.int32(t))
  weights = msl_weights_numpy(t, k, n)

  def loss_at(phi, m, j, x, y):
    return mean_squared_error(model.apply(with_copy(phi, m.step_weights, j), x), y)

  def sgd_step(phi, rates, grads, j):
    return jax.tree.map(lambda p, a, g: p - a[j] * g, phi, rates, grads)

  def reference(m):
    total = 0.0
    for i in range(NUM_TASKS):
      support, query = batch[:2], batch[2:]
      x, y = support[0][i], support[1][i]
      phi = m.init
      for j in range(k):
        phi = sgd_step(phi, m.learning_rates, jax.grad(loss_at)(phi, m, j, x, y), j)
        total += weights[j] * loss_at(phi, m, j + 1, query[0][i], query[1][i])
    return total / NUM_TASKS

  value, ref_grads = jax.jit(jax.value_and_grad(reference))(mp)
  np.testing.assert_allclose(metrics['objective'], value, rtol=1e-12)
  chex.assert_trees_all_close(grads, ref_grads, rtol=1e-10, atol=1e-13)
  # And the gradient of the estimator's own objective along the copies and rates.
  objective = lambda m: grad_fn(m, batch, jnp.int32(t)).metrics['objective']  # noqa: E731
  direction = random_like(k3, mp)
  fd = directional_fd(objective, mp, direction)
  np.testing.assert_allclose(tree_vdot(grads, direction), fd, rtol=1e-6)

  # Adaptation for evaluation: phi_K with copy K, ready for model.apply.
  x, y = batch.support_inputs[0], batch.support_targets[0]
  adapted = maml_plus_plus_adapt(model, mean_squared_error, mp, x, y, steps=k)
  phi = mp.init
  for j in range(k):
    phi = sgd_step(phi, rates, jax.grad(loss_at)(phi, mp, j, x, y), j)
  chex.assert_trees_all_close(
    adapted, with_copy(phi, copies, k), rtol=1e-12, atol=1e-14
  )


# --- The trainer passes the iteration -------------------------------------------------


def test_trainer_passes_the_iteration_without_retracing():
  base = jmeta.mlp((4,), 1)
  calls = [0]

  def apply(params, inputs, **kwargs):
    calls[0] += 1
    return base.apply(params, inputs, **kwargs)

  model = jmeta.Model(base.init, apply)
  batch = jmeta.sinusoid_tasks(4, 5).sample(jax.random.key(0), NUM_TASKS)
  est = maml_plus_plus(
    model,
    mean_squared_error,
    inner_steps=2,
    inner_learning_rate=ALPHA,
    multi_step_loss=True,
    msl_anneal_iterations=2,
  )
  trainer = jmeta.make_meta_trainer(est, optax.sgd(0.1))
  state = trainer.init(
    maml_plus_plus_params(
      model.init(jax.random.key(1), jnp.zeros((1, 1))), inner_steps=2
    )
  )
  at = jax.jit(est.meta_gradient)
  for t in range(4):
    expected = at(state.params, batch, jnp.int32(t))
    state, metrics = trainer.step(state, batch)
    if t == 0:
      traced = calls[0]
    chex.assert_trees_all_close(metrics, expected.metrics, rtol=1e-5, atol=1e-7)
    # The multi-step objective while annealing, the final-step loss after.
    assert (metrics['objective'] == metrics['loss']) == (t >= 2)
  assert calls[0] == traced, 'the step re-traced'
  assert int(state.step) == 4


# --- Bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
  'kwargs, match',
  [
    (dict(inner_steps=0), 'inner_steps must be'),
    (dict(inner_steps=1.5), 'inner_steps must be'),
    (dict(inner_learning_rate=None), 'inner_learning_rate'),
    (dict(inner_learning_rate=-1.0), 'inner_learning_rate'),
    (dict(multi_step_loss=True), 'msl_anneal_iterations'),
    (dict(multi_step_loss=False, msl_anneal_iterations=5), 'msl_anneal_iterations'),
    (dict(multi_step_loss=True, msl_anneal_iterations=-1), 'msl_anneal_iterations'),
    (dict(multi_step_loss=1, msl_anneal_iterations=5), 'multi_step_loss'),
    (dict(derivative_order_annealing_iterations=-2), 'derivative_order_annealing'),
    (dict(derivative_order_annealing_iterations=2.0), 'derivative_order_annealing'),
    (dict(learn_inner_rates='yes'), 'learn_inner_rates'),
    (dict(per_step_bn_weights='scale'), 'per_step_bn_weights'),
    (dict(batching='pmap'), 'unknown batching strategy'),
  ],
)
def test_maml_plus_plus_rejects_bad_arguments(kwargs, match):
  model = jmeta.mlp((), 1)
  kwargs = dict(dict(inner_steps=1, inner_learning_rate=0.1), **kwargs)
  with pytest.raises(ValueError, match=match):
    maml_plus_plus(model, mean_squared_error, **kwargs)


def test_params_and_weights_reject_bad_arguments():
  params = jmeta.mlp((2,), 1).init(jax.random.key(0), jnp.zeros((1, 1)))
  with pytest.raises(ValueError, match='inner_learning_rate'):
    maml_plus_plus_params(params, inner_steps=1, learn_inner_rates=True)
  with pytest.raises(ValueError, match='inner_steps'):
    maml_plus_plus_params(params, inner_steps=0)
  with pytest.raises(ValueError, match='per_step_bn_weights selects no'):
    maml_plus_plus_params(params, inner_steps=1, per_step_bn_weights=select_bn)
  with pytest.raises(ValueError, match='per_step_bn_weights selects every'):
    maml_plus_plus_params(params, inner_steps=1, per_step_bn_weights=lambda p: True)
  with pytest.raises(ValueError, match='inner_steps'):
    msl_weights(0, 0, 5)
  with pytest.raises(ValueError, match='anneal_iterations'):
    msl_weights(0, 2, -1)
  with pytest.raises(ValueError, match='iteration must be a scalar'):
    msl_weights(jnp.zeros(2), 2, 5)


def test_meta_gradient_rejects_params_it_was_not_built_for():
  model = jmeta.mlp((2,), 1)
  params = model.init(jax.random.key(0), jnp.zeros((1, 1)))
  batch = jmeta.sinusoid_tasks(2, 2).sample(jax.random.key(0), 2)
  est = maml_plus_plus(
    model, mean_squared_error, inner_steps=2, inner_learning_rate=0.1
  )
  learned = maml_plus_plus(
    model, mean_squared_error, inner_steps=2, learn_inner_rates=True
  )
  rates = maml_plus_plus_params(
    params, inner_steps=3, inner_learning_rate=0.1, learn_inner_rates=True
  )
  select = lambda path: path[-1].key == 'b'  # noqa: E731
  with pytest.raises(ValueError, match='MAMLPlusPlusParams'):
    est.meta_gradient(params, batch)
  with pytest.raises(ValueError, match='learn_inner_rates'):
    est.meta_gradient(rates, batch)
  with pytest.raises(ValueError, match='inner_steps=2'):
    learned.meta_gradient(rates, batch)
  with pytest.raises(ValueError, match='per_step_bn_weights'):
    est.meta_gradient(
      maml_plus_plus_params(params, inner_steps=2, per_step_bn_weights=select), batch
    )
  with pytest.raises(ValueError, match='iteration must be a scalar'):
    est.meta_gradient(maml_plus_plus_params(params, inner_steps=2), batch, jnp.zeros(2))
  with pytest.raises(ValueError, match='inner_learning_rate'):
    maml_plus_plus_adapt(
      model,
      mean_squared_error,
      maml_plus_plus_params(params, inner_steps=2),
      batch.support_inputs[0],
      batch.support_targets[0],
      steps=2,
    )
