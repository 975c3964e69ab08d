"""The inner loop: ``adapt`` and ``adaptation_curve`` against hand-written updates."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jmeta
from jmeta.losses import mean_squared_error

LINEAR = jmeta.mlp((), 1)  # x @ w + b


def regression_data(seed=0, n=6, features=2):
  rng = np.random.default_rng(seed)
  x, xq = rng.normal(size=(2, n, features))
  w_true = rng.normal(size=(features, 1))
  return x, x @ w_true + 0.3, xq, xq @ w_true + 0.3


def linear_params(seed=1, features=2):
  rng = np.random.default_rng(seed)
  return {'layer_0': {'w': rng.normal(size=(features, 1)), 'b': rng.normal(size=(1,))}}


def mse_grad(params, x, y):
  """Closed-form gradient of mean((x w + b - y)^2) for the linear model."""
  r = x @ params['layer_0']['w'] + params['layer_0']['b'] - y
  n = r.size
  return {'layer_0': {'w': 2 * x.T @ r / n, 'b': 2 * r.sum(0) / n}}


def as_jnp(tree):
  return jax.tree.map(jnp.asarray, tree)


@pytest.mark.parametrize('steps', [0, 1, 4])
def test_adapt_with_sgd_equals_hand_gradient_descent(x64, steps):
  x, y, _, _ = regression_data()
  params = linear_params()
  expected = params
  for _ in range(steps):
    g = mse_grad(expected, x, y)
    expected = jax.tree.map(lambda p, gi: p - 0.1 * gi, expected, g)
  adapted = jmeta.adapt(
    LINEAR, mean_squared_error, as_jnp(params), x, y, steps=steps, learning_rate=0.1
  )
  chex.assert_trees_all_close(adapted, expected, rtol=1e-12, atol=1e-14)


def test_adapt_zero_steps_returns_params_unchanged():
  params = LINEAR.init(jax.random.key(0), jnp.zeros((1, 2)))
  x, y, _, _ = regression_data()
  adapted = jmeta.adapt(
    LINEAR,
    mean_squared_error,
    params,
    jnp.asarray(x, jnp.float32),
    y,
    steps=0,
    learning_rate=0.1,
  )
  chex.assert_trees_all_equal(adapted, params)


def test_adapt_with_sgd_momentum_equals_hand_heavy_ball(x64):
  x, y, _, _ = regression_data(seed=2)
  params = linear_params(seed=3)
  lr, beta = 0.05, 0.9
  phi, trace = params, jax.tree.map(np.zeros_like, params)
  for _ in range(3):
    g = mse_grad(phi, x, y)
    trace = jax.tree.map(lambda t, gi: gi + beta * t, trace, g)
    phi = jax.tree.map(lambda p, t: p - lr * t, phi, trace)
  adapted = jmeta.adapt(
    LINEAR,
    mean_squared_error,
    as_jnp(params),
    x,
    y,
    steps=3,
    optimizer=optax.sgd(lr, momentum=beta),
  )
  chex.assert_trees_all_close(adapted, phi, rtol=1e-12, atol=1e-14)


def test_adapt_with_sgd_optimizer_equals_learning_rate(x64):
  x, y, _, _ = regression_data(seed=4)
  params = as_jnp(linear_params(seed=5))
  by_lr = jmeta.adapt(
    LINEAR, mean_squared_error, params, x, y, steps=3, learning_rate=0.2
  )
  by_opt = jmeta.adapt(
    LINEAR, mean_squared_error, params, x, y, steps=3, optimizer=optax.sgd(0.2)
  )
  chex.assert_trees_all_close(by_lr, by_opt, rtol=1e-14)


def test_first_order_adapts_to_the_same_params_but_has_identity_jacobian(x64):
  x, y, xq, yq = regression_data(seed=6)
  params = as_jnp(linear_params(seed=7))

  def query_after(p, first_order):
    phi = jmeta.adapt(
      LINEAR,
      mean_squared_error,
      p,
      x,
      y,
      steps=2,
      learning_rate=0.1,
      first_order=first_order,
    )
    return mean_squared_error(LINEAR.apply(phi, xq), yq), phi

  (_, phi2), g2 = jax.value_and_grad(query_after, has_aux=True)(params, False)
  (_, phi1), g1 = jax.value_and_grad(query_after, has_aux=True)(params, True)
  chex.assert_trees_all_close(phi1, phi2, rtol=1e-14)
  # First order: d phi / d theta = I, so the gradient is grad L_query at phi.
  chex.assert_trees_all_close(
    g1, mse_grad(jax.tree.map(np.asarray, phi1), xq, yq), rtol=1e-10
  )
  # Second order: (I - alpha H)^2 grad L_query(phi), H = 2/n X1^T X1 (X1 = [x, 1]).
  x1 = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
  jac = np.linalg.matrix_power(np.eye(3) - 0.1 * 2 * x1.T @ x1 / x.shape[0], 2)
  gq = mse_grad(jax.tree.map(np.asarray, phi2), xq, yq)
  flat = jac.T @ np.concatenate([gq['layer_0']['w'][:, 0], gq['layer_0']['b']])
  np.testing.assert_allclose(g2['layer_0']['w'][:, 0], flat[:2], rtol=1e-10)
  np.testing.assert_allclose(g2['layer_0']['b'], flat[2:], rtol=1e-10)


def five_point(f, x, h):
  return (-f(x + 2 * h) + 8 * f(x + h) - 8 * f(x - h) + f(x - 2 * h)) / (12 * h)


@pytest.mark.parametrize(
  'make_inner',
  [
    lambda lr: {'learning_rate': lr},
    lambda lr: {'optimizer': optax.sgd(lr, momentum=0.9)},
    lambda lr: {'optimizer': optax.adam(lr, eps_root=1e-8)},
  ],
  ids=['sgd', 'sgd_momentum', 'adam'],
)
def test_gradient_wrt_traced_inner_learning_rate_matches_finite_differences(
  x64, make_inner
):
  model = jmeta.mlp((6,), 1, activation=jnp.tanh)
  x, y, xq, yq = (jnp.asarray(a) for a in regression_data(seed=8, features=1))
  params = model.init(jax.random.key(0), x)
  params = jax.tree.map(lambda p: p.astype(jnp.float64), params)

  @jax.jit
  def query_loss(lr):
    phi = jmeta.adapt(
      model, mean_squared_error, params, x, y, steps=3, **make_inner(lr)
    )
    return mean_squared_error(model.apply(phi, xq), yq)

  lr = jnp.asarray(0.05, jnp.float64)
  grad = jax.grad(query_loss)(lr)
  assert np.isfinite(grad) and abs(grad) > 1e-6
  np.testing.assert_allclose(grad, five_point(query_loss, lr, 1e-5), rtol=1e-6)


def test_adapt_vmaps_over_tasks_like_a_loop():
  model = jmeta.mlp((5,), 1)
  batch = jmeta.sinusoid_tasks(4, 3).sample(jax.random.key(0), 3)
  params = model.init(jax.random.key(1), batch.support_inputs[0])

  @jax.jit
  def one(x, y):
    return jmeta.adapt(
      model, mean_squared_error, params, x, y, steps=2, learning_rate=0.1
    )

  batched = jax.jit(jax.vmap(one))(batch.support_inputs, batch.support_targets)
  looped = [one(x, y) for x, y in zip(batch.support_inputs, batch.support_targets)]
  chex.assert_trees_all_close(
    batched, jax.tree.map(lambda *a: jnp.stack(a), *looped), rtol=1e-5, atol=1e-6
  )


def test_adaptation_curve_equals_query_loss_after_k_steps(x64):
  model = jmeta.mlp((5,), 1, activation=jnp.tanh)
  x, y, xq, yq = (jnp.asarray(a) for a in regression_data(seed=9, features=1))
  params = jax.tree.map(
    lambda p: p.astype(jnp.float64), model.init(jax.random.key(2), x)
  )
  curve = jmeta.adaptation_curve(
    model, mean_squared_error, params, (x, y), (xq, yq), steps=3, learning_rate=0.1
  )
  assert curve.shape == (4,)
  for k in range(4):
    phi = jmeta.adapt(
      model, mean_squared_error, params, x, y, steps=k, learning_rate=0.1
    )
    np.testing.assert_allclose(
      curve[k], mean_squared_error(model.apply(phi, xq), yq), rtol=1e-12
    )


# --- Bad input ----------------------------------------------------------------------


def setup_small():
  params = LINEAR.init(jax.random.key(0), jnp.zeros((1, 1)))
  return params, jnp.ones((4, 1)), jnp.ones((4, 1))


@pytest.mark.parametrize(
  'steps, match',
  [
    (-1, 'steps must be >= 0'),
    (1.5, 'steps must be a non-negative Python int'),
    (True, 'steps must be a non-negative Python int'),
    (np.bool_(True), 'steps must be a non-negative Python int'),
    (jnp.asarray(2), 'steps must be a non-negative Python int'),
  ],
)
def test_adapt_rejects_bad_step_counts(steps, match):
  params, x, y = setup_small()
  with pytest.raises(ValueError, match=match):
    jmeta.adapt(
      LINEAR, mean_squared_error, params, x, y, steps=steps, learning_rate=0.1
    )
  with pytest.raises(ValueError, match=match):
    jmeta.adaptation_curve(
      LINEAR,
      mean_squared_error,
      params,
      (x, y),
      (x, y),
      steps=steps,
      learning_rate=0.1,
    )


def test_adapt_rejects_empty_support_set():
  params, _, _ = setup_small()
  with pytest.raises(ValueError, match='support set is empty'):
    jmeta.adapt(
      LINEAR,
      mean_squared_error,
      params,
      jnp.ones((0, 1)),
      jnp.ones((0, 1)),
      steps=1,
      learning_rate=0.1,
    )


def test_adapt_rejects_mismatched_support_targets():
  params, x, _ = setup_small()
  with pytest.raises(ValueError, match='disagree on the number of examples'):
    jmeta.adapt(
      LINEAR,
      mean_squared_error,
      params,
      x,
      jnp.ones((3, 1)),
      steps=1,
      learning_rate=0.1,
    )


def test_adapt_rejects_inputs_the_model_was_not_built_for():
  params, _, y = setup_small()  # initialised for 1 input feature
  with pytest.raises(ValueError, match=r'model.apply does not accept.*\(4, 3\)'):
    jmeta.adapt(
      LINEAR,
      mean_squared_error,
      params,
      jnp.ones((4, 3)),
      y,
      steps=1,
      learning_rate=0.1,
    )


def test_adapt_rejects_bad_inner_optimizer_arguments():
  params, x, y = setup_small()
  with pytest.raises(
    ValueError, match='either an inner optimizer or an inner learning'
  ):
    jmeta.adapt(
      LINEAR,
      mean_squared_error,
      params,
      x,
      y,
      steps=1,
      learning_rate=0.1,
      optimizer=optax.sgd(0.1),
    )
  with pytest.raises(ValueError, match='needs a learning_rate'):
    jmeta.adapt(LINEAR, mean_squared_error, params, x, y, steps=1)
  with pytest.raises(ValueError, match='must be an optax.GradientTransformation'):
    jmeta.adapt(
      LINEAR, mean_squared_error, params, x, y, steps=1, optimizer=lambda g: g
    )


def test_remat_adapts_and_differentiates_identically(x64):
  x, y, xq, yq = regression_data(seed=10)
  params = as_jnp(linear_params(seed=11))

  def query_after(p, remat):
    phi = jmeta.adapt(
      LINEAR, mean_squared_error, p, x, y, steps=3, learning_rate=0.1, remat=remat
    )
    return mean_squared_error(LINEAR.apply(phi, xq), yq)

  plain = jax.value_and_grad(query_after)(params, False)
  remat = jax.value_and_grad(query_after)(params, True)
  chex.assert_trees_all_close(remat, plain, rtol=1e-12, atol=1e-15)

  # jax.checkpoint (primitive 'remat'/'checkpoint') appears only with remat=True.
  def program(r):
    return str(jax.make_jaxpr(jax.grad(query_after), static_argnums=1)(params, r))

  assert 'remat' not in program(False) and 'checkpoint' not in program(False)
  assert 'remat' in program(True) or 'checkpoint' in program(True)


# Minibatched inner loops (Reptile's sampling).


@pytest.mark.parametrize('n, batch_size, steps', [(6, 2, 3), (6, 4, 5), (5, 5, 2)])
def test_minibatch_indices_visit_every_example_once_per_epoch(n, batch_size, steps):
  idx = np.asarray(
    jmeta.inner_loop.minibatch_indices(jax.random.key(3), n, batch_size, steps)
  )
  assert idx.shape == (steps, batch_size) and idx.dtype.kind == 'i'
  stream = idx.reshape(-1)
  for start in range(0, stream.size, n):
    epoch = stream[start : start + n]
    # A full epoch is a permutation; a partial last one has no repeats.
    assert len(set(epoch.tolist())) == epoch.size
    assert set(epoch.tolist()) <= set(range(n))
    if epoch.size == n:
      assert sorted(epoch.tolist()) == list(range(n))


def test_minibatch_indices_are_a_pure_function_of_the_key():
  draw = jmeta.inner_loop.minibatch_indices
  np.testing.assert_array_equal(
    draw(jax.random.key(0), 20, 5, 8), draw(jax.random.key(0), 20, 5, 8)
  )
  assert not np.array_equal(
    draw(jax.random.key(0), 20, 5, 8), draw(jax.random.key(1), 20, 5, 8)
  )


@pytest.mark.parametrize('batch_size', [0, 7, 2.0, True])
def test_minibatch_indices_reject_batches_the_support_cannot_fill(batch_size):
  with pytest.raises(ValueError, match='inner batch size'):
    jmeta.inner_loop.minibatch_indices(jax.random.key(0), 6, batch_size, 3)


def test_data_key_depends_on_every_value_and_its_position():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)
  same = jmeta.inner_loop.data_key(x)
  bits = lambda k: np.asarray(jax.random.key_data(k))  # noqa: E731
  np.testing.assert_array_equal(bits(same), bits(jmeta.inner_loop.data_key(x + 0)))
  others = [x.at[2, 1].add(1e-3), x[::-1], x.at[0].set(x[1]).at[1].set(x[0])]
  for other in others + [x]:
    key = jmeta.inner_loop.data_key(other, seed=1 if other is x else 0)
    assert not np.array_equal(bits(key), bits(same))


def test_adapt_on_minibatches_equals_hand_sgd_on_the_drawn_batches(x64):
  x, y, _, _ = regression_data(n=6)
  params = linear_params()
  key = jax.random.key(7)
  idx = np.asarray(jmeta.inner_loop.minibatch_indices(key, 6, 4, 5))
  expected = params
  for batch in idx:
    g = mse_grad(expected, x[batch], y[batch])
    expected = jax.tree.map(lambda p, gi: p - 0.1 * gi, expected, g)

  def adapt(**kwargs):
    return jmeta.adapt(
      LINEAR,
      mean_squared_error,
      as_jnp(params),
      x,
      y,
      steps=5,
      learning_rate=0.1,
      batch_size=4,
      **kwargs,
    )

  chex.assert_trees_all_close(adapt(key=key), expected, rtol=1e-12, atol=1e-14)
  # Without a key the order comes from the support inputs themselves.
  chex.assert_trees_all_equal(adapt(), adapt(key=jmeta.inner_loop.data_key(x)))


def test_adapt_on_full_size_minibatches_equals_full_batch_steps(x64):
  # A batch of every example is a permutation of the support set: same mean loss.
  x, y, _, _ = regression_data(n=6)
  params = as_jnp(linear_params())
  kwargs = dict(steps=4, optimizer=optax.adam(0.05))
  full = jmeta.adapt(LINEAR, mean_squared_error, params, x, y, **kwargs)
  batched = jmeta.adapt(
    LINEAR, mean_squared_error, params, x, y, batch_size=6, **kwargs
  )
  chex.assert_trees_all_close(batched, full, rtol=1e-12, atol=1e-14)
