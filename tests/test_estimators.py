"""Meta-gradient estimators against closed forms, finite differences and bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jmeta
from jmeta.losses import mean_squared_error

DIM = 3
NUM_TASKS = 4
ALPHA = 0.1


# --- Quadratic tasks: L_i(theta) = 1/2 (theta - c_i)^T A_i (theta - c_i) -------------
#
# The model's output is theta itself (one copy per example); each target packs a
# task's [A | c] as a (DIM, DIM + 1) array, so the loss reads its matrix from the
# batch and the support (A, c) and query (B, d) losses differ per task.


def quadratic_model() -> jmeta.Model:
  def init(key, example_inputs):
    del example_inputs
    return jax.random.normal(key, (DIM,))

  def apply(theta, inputs, *, batch_norm=jmeta.TRANSDUCTIVE):
    del batch_norm
    return jnp.broadcast_to(theta, (inputs.shape[0], DIM))

  return jmeta.Model(init, apply)


def quadratic_loss(outputs, targets):
  matrix, center = targets[..., :-1], targets[..., -1]
  r = outputs - center
  return jnp.mean(0.5 * jnp.einsum('ni,nij,nj->n', r, matrix, r))


def random_spd(rng, n):
  m = rng.normal(size=(n, DIM, DIM))
  # Eigenvalues in [0.5, ~3]: I - alpha A is a contraction at alpha = 0.1.
  return m @ np.transpose(m, (0, 2, 1)) / DIM + 0.5 * np.eye(DIM)


def quadratic_tasks(seed=0):
  """(A, c, B, d) as numpy float64 arrays and the TaskBatch that encodes them."""
  rng = np.random.default_rng(seed)
  a, b = random_spd(rng, NUM_TASKS), random_spd(rng, NUM_TASKS)
  c, d = rng.normal(size=(2, NUM_TASKS, DIM))
  pack = lambda m, v: np.concatenate([m, v[..., None]], axis=-1)[:, None]  # noqa: E731
  dummy = np.zeros((NUM_TASKS, 1, 1))
  batch = jmeta.TaskBatch(
    jnp.asarray(dummy),
    jnp.asarray(pack(a, c)),
    jnp.asarray(dummy),
    jnp.asarray(pack(b, d)),
  )
  return (a, c, b, d), batch


def closed_form(theta, a, c, b, d, k):
  """phi_i, the MAML gradient, the first-order gradient and the losses, per task."""
  eye = np.eye(DIM)
  out = {'phi': [], 'maml': [], 'fomaml': [], 'loss': [], 'support_loss': []}
  for a_i, c_i, b_i, d_i in zip(a, c, b, d):
    p = np.linalg.matrix_power(eye - ALPHA * a_i, k)
    phi = p @ theta + (eye - p) @ c_i
    out['phi'].append(phi)
    out['fomaml'].append(b_i @ (phi - d_i))
    out['maml'].append(p.T @ b_i @ (phi - d_i))
    out['loss'].append(0.5 * (phi - d_i) @ b_i @ (phi - d_i))
    out['support_loss'].append(0.5 * (theta - c_i) @ a_i @ (theta - c_i))
  return {name: np.asarray(v) for name, v in out.items()}


def relative_error(x, ref):
  return np.linalg.norm(np.asarray(x) - ref) / np.linalg.norm(ref)


@pytest.mark.parametrize('k', [1, 2, 3])
def test_maml_matches_closed_form_on_quadratic_tasks(x64, k):
  (a, c, b, d), batch = quadratic_tasks()
  theta = np.random.default_rng(1).normal(size=DIM)
  est = jmeta.maml(
    quadratic_model(),
    quadratic_loss,
    inner_steps=k,
    inner_learning_rate=ALPHA,
    batching='vmap',
  )
  grads, metrics = jax.jit(est.meta_gradient)(jnp.asarray(theta), batch)
  ref = closed_form(theta, a, c, b, d, k)
  assert grads.dtype == jnp.float64
  assert relative_error(grads, ref['maml'].mean(0)) <= 1e-6
  # Second order really matters here: the first-order answer is far away.
  assert relative_error(ref['fomaml'].mean(0), ref['maml'].mean(0)) > 1e-2
  np.testing.assert_allclose(metrics['loss'], ref['loss'].mean(), rtol=1e-10)
  np.testing.assert_allclose(
    metrics['support_loss'], ref['support_loss'].mean(), rtol=1e-10
  )


@pytest.mark.parametrize('k', [1, 3])
def test_fomaml_matches_closed_form_without_jacobian(x64, k):
  (a, c, b, d), batch = quadratic_tasks(seed=2)
  theta = np.random.default_rng(3).normal(size=DIM)
  est = jmeta.fomaml(
    quadratic_model(), quadratic_loss, inner_steps=k, inner_learning_rate=ALPHA
  )
  grads, _ = jax.jit(est.meta_gradient)(jnp.asarray(theta), batch)
  ref = closed_form(theta, a, c, b, d, k)
  assert relative_error(grads, ref['fomaml'].mean(0)) <= 1e-6


@pytest.mark.parametrize('k', [1, 3])
def test_reptile_matches_closed_form(x64, k):
  (a, c, b, d), batch = quadratic_tasks(seed=4)
  theta = np.random.default_rng(5).normal(size=DIM)
  est = jmeta.reptile(
    quadratic_model(), quadratic_loss, inner_steps=k, inner_learning_rate=ALPHA
  )
  grads, metrics = jax.jit(est.meta_gradient)(jnp.asarray(theta), batch)
  ref = closed_form(theta, a, c, b, d, k)
  assert relative_error(grads, (theta - ref['phi']).mean(0)) <= 1e-6
  np.testing.assert_allclose(metrics['loss'], ref['loss'].mean(), rtol=1e-10)


def test_pretrain_is_the_gradient_of_the_unadapted_query_loss(x64):
  (a, c, b, d), batch = quadratic_tasks(seed=6)
  theta = np.random.default_rng(7).normal(size=DIM)
  est = jmeta.pretrain(quadratic_model(), quadratic_loss)
  grads, _ = jax.jit(est.meta_gradient)(jnp.asarray(theta), batch)
  ref = closed_form(theta, a, c, b, d, 0)
  assert relative_error(grads, ref['maml'].mean(0)) <= 1e-6


# --- Finite differences on a small MLP ----------------------------------------------


def tree_vdot(a, b):
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def random_like(key, tree):
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(
    treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
  )


def directional_fd(f, params, direction, h=3e-6):
  """Five-point central difference of f along direction: error O(h^4).

  Adam's normalised step makes the meta-loss strongly curved, so the plain O(h^2)
  central difference is not accurate to 1e-6 at any step size float64 allows.
  """

  def at(s):
    return f(jax.tree.map(lambda p, v: p + s * h * v, params, direction))

  return (-at(2) + 8 * at(1) - 8 * at(-1) + at(-2)) / (12 * h)


def mlp_setup():
  """A float64 tanh MLP, its params and a sinusoid batch (call inside ``x64``)."""
  model = jmeta.mlp((8,), 1, activation=jnp.tanh)
  batch = jmeta.sinusoid_tasks(4, 5, dtype=jnp.float64).sample(
    jax.random.key(0), NUM_TASKS
  )
  params = model.init(jax.random.key(1), batch.support_inputs[0])
  params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
  return model, params, batch


def hand_meta_loss(model, batch, steps, **inner):
  """The MAML meta-loss written independently: a loop over tasks of adapt + query."""

  def meta_loss(params):
    losses = []
    for i in range(batch.num_tasks):
      phi = jmeta.adapt(
        model,
        mean_squared_error,
        params,
        batch.support_inputs[i],
        batch.support_targets[i],
        steps=steps,
        **inner,
      )
      losses.append(
        mean_squared_error(
          model.apply(phi, batch.query_inputs[i]), batch.query_targets[i]
        )
      )
    return jnp.mean(jnp.stack(losses))

  return jax.jit(meta_loss)


def assert_matches_finite_differences(meta_loss, grads, params, seed, rtol=1e-6):
  for key in jax.random.split(jax.random.key(seed), 3):
    direction = random_like(key, params)
    fd = directional_fd(meta_loss, params, direction)
    np.testing.assert_allclose(tree_vdot(grads, direction), fd, rtol=rtol)


def test_maml_mlp_meta_gradient_matches_finite_differences(x64):
  model, params, batch = mlp_setup()
  est = jmeta.maml(
    model, mean_squared_error, inner_steps=2, inner_learning_rate=0.05, batching='vmap'
  )
  grads, metrics = jax.jit(est.meta_gradient)(params, batch)
  meta_loss = hand_meta_loss(model, batch, 2, learning_rate=0.05)
  np.testing.assert_allclose(metrics['loss'], meta_loss(params), rtol=1e-12)
  chex.assert_tree_all_finite(grads)
  assert_matches_finite_differences(meta_loss, grads, params, seed=2)


@pytest.mark.parametrize(
  'make_optimizer',
  [
    lambda: optax.sgd(0.05, momentum=0.9),
    lambda: optax.adam(0.05, eps_root=1e-8),
  ],
  ids=['sgd_momentum', 'adam'],
)
def test_maml_through_optax_inner_optimizer_matches_finite_differences(
  x64, make_optimizer
):
  model, params, batch = mlp_setup()
  est = jmeta.maml(
    model,
    mean_squared_error,
    inner_steps=3,
    inner_optimizer=make_optimizer(),
    batching='vmap',
  )
  grads, _ = jax.jit(est.meta_gradient)(params, batch)
  chex.assert_tree_all_finite(grads)
  meta_loss = hand_meta_loss(model, batch, 3, optimizer=make_optimizer())
  assert_matches_finite_differences(meta_loss, grads, params, seed=3)


def test_fomaml_on_mlp_is_the_query_gradient_at_the_adapted_params(x64):
  model, params, batch = mlp_setup()
  kwargs = dict(inner_steps=2, inner_learning_rate=0.05, batching='vmap')
  first = jax.jit(jmeta.fomaml(model, mean_squared_error, **kwargs).meta_gradient)
  second = jax.jit(jmeta.maml(model, mean_squared_error, **kwargs).meta_gradient)
  first, second = first(params, batch), second(params, batch)

  @jax.jit
  def query_gradient_at_phi(x, y, xq, yq):
    phi = jmeta.adapt(
      model, mean_squared_error, params, x, y, steps=2, learning_rate=0.05
    )
    return jax.grad(lambda p: mean_squared_error(model.apply(p, xq), yq))(phi)

  per_task = [query_gradient_at_phi(*(f[i] for f in batch)) for i in range(NUM_TASKS)]
  expected = jax.tree.map(lambda *g: jnp.mean(jnp.stack(g), axis=0), *per_task)
  chex.assert_trees_all_close(first.grads, expected, rtol=1e-10, atol=1e-14)
  # Same adapted params, hence the same loss, but not the second-order gradient.
  np.testing.assert_allclose(first.metrics['loss'], second.metrics['loss'], rtol=1e-12)
  diff = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), first.grads, second.grads)
  assert max(jax.tree.leaves(diff)) > 1e-6


def test_zero_inner_steps_maml_equals_pretrain(x64):
  model, params, batch = mlp_setup()
  zero = jmeta.maml(model, mean_squared_error, inner_steps=0, inner_learning_rate=0.1)
  base = jmeta.pretrain(model, mean_squared_error)
  a = jax.jit(zero.meta_gradient)(params, batch)
  b = jax.jit(base.meta_gradient)(params, batch)
  chex.assert_trees_all_close(a.grads, b.grads, rtol=1e-12)
  chex.assert_trees_all_close(a.metrics, b.metrics, rtol=1e-12)


def test_metrics_fn_is_averaged_over_tasks():
  model = jmeta.mlp((4,), 3)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 6, 5)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 3, size=(2, 6)))
  batch = jmeta.TaskBatch(x, y, x, y)
  params = model.init(jax.random.key(0), x[0])
  est = jmeta.maml(
    model,
    jmeta.losses.cross_entropy,
    inner_steps=1,
    inner_learning_rate=0.1,
    metrics_fn=jmeta.losses.classification_metrics,
  )
  _, metrics = est.meta_gradient(params, batch)
  accs = []
  for i in range(2):
    phi = jmeta.adapt(
      model, jmeta.losses.cross_entropy, params, x[i], y[i], steps=1, learning_rate=0.1
    )
    accs.append(jmeta.losses.accuracy(model.apply(phi, x[i]), y[i]))
  np.testing.assert_allclose(metrics['accuracy'], np.mean(accs), rtol=1e-6)


def test_make_estimator_builds_by_name():
  model = jmeta.mlp((4,), 1)
  for name in ('maml', 'fomaml', 'reptile'):
    est = jmeta.make_learner(
      name, model, mean_squared_error, inner_steps=1, inner_learning_rate=0.1
    )
    assert est.name == name
  assert jmeta.make_learner('pretrain', model, mean_squared_error).name == 'pretrain'
  for name, extra in (('imaml', {'regularization': 1.0}), ('anil', {})):
    est = jmeta.make_learner(
      name, model, mean_squared_error, inner_steps=1, inner_learning_rate=0.1, **extra
    )
    assert est.name == name
  assert jmeta.make_learner('meta_sgd', model, mean_squared_error).name == 'meta_sgd'
  with pytest.raises(ValueError, match='unknown learner'):
    jmeta.make_learner('imaml2', model, mean_squared_error)


# --- Bad input ----------------------------------------------------------------------


def small_regression_batch(features=1, support_features=None, num_tasks=2):
  rng = np.random.default_rng(0)
  sf = features if support_features is None else support_features
  return jmeta.TaskBatch(
    jnp.asarray(rng.normal(size=(num_tasks, 3, sf)), jnp.float32),
    jnp.zeros((num_tasks, 3, 1)),
    jnp.asarray(rng.normal(size=(num_tasks, 4, features)), jnp.float32),
    jnp.zeros((num_tasks, 4, 1)),
  )


def test_meta_gradient_rejects_support_query_feature_mismatch():
  model = jmeta.mlp((4,), 1)
  batch = small_regression_batch(features=2, support_features=3)
  params = model.init(jax.random.key(0), batch.support_inputs[0])
  est = jmeta.maml(model, mean_squared_error, inner_steps=1, inner_learning_rate=0.1)
  with pytest.raises(ValueError, match='different feature shapes'):
    est.meta_gradient(params, batch)
  with pytest.raises(ValueError, match='different feature shapes'):
    jax.jit(est.meta_gradient)(params, batch)


def test_meta_gradient_rejects_inputs_the_model_was_not_built_for():
  model = jmeta.mlp((4,), 1)
  params = model.init(jax.random.key(0), jnp.zeros((1, 1)))
  batch = small_regression_batch(features=3)
  for make in (jmeta.maml, jmeta.fomaml, jmeta.reptile):
    est = make(model, mean_squared_error, inner_steps=1, inner_learning_rate=0.1)
    with pytest.raises(ValueError, match='model.apply does not accept'):
      est.meta_gradient(params, batch)


def test_meta_gradient_rejects_empty_support_set():
  model = jmeta.mlp((4,), 1)
  params = model.init(jax.random.key(0), jnp.zeros((1, 1)))
  batch = small_regression_batch()
  empty = batch._replace(
    support_inputs=batch.support_inputs[:, :0],
    support_targets=batch.support_targets[:, :0],
  )
  est = jmeta.maml(model, mean_squared_error, inner_steps=1, inner_learning_rate=0.1)
  with pytest.raises(ValueError, match='support set is empty'):
    est.meta_gradient(params, empty)


@pytest.mark.parametrize('steps', [-1, 1.5, True, None, '2'])
def test_estimators_reject_bad_inner_steps(steps):
  model = jmeta.mlp((4,), 1)
  for make in (jmeta.maml, jmeta.fomaml, jmeta.reptile):
    with pytest.raises(ValueError, match='inner_steps must be'):
      make(model, mean_squared_error, inner_steps=steps, inner_learning_rate=0.1)


def test_estimators_accept_numpy_integer_steps():
  est = jmeta.maml(
    jmeta.mlp((4,), 1),
    mean_squared_error,
    inner_steps=np.int64(2),
    inner_learning_rate=0.1,
  )
  assert est.name == 'maml'


def test_estimators_reject_unknown_batching_strategy():
  model = jmeta.mlp((4,), 1)
  for make in (jmeta.maml, jmeta.reptile):
    with pytest.raises(ValueError, match="unknown batching strategy 'pmap'"):
      make(
        model,
        mean_squared_error,
        inner_steps=1,
        inner_learning_rate=0.1,
        batching='pmap',
      )
  with pytest.raises(ValueError, match='unknown batching strategy'):
    jmeta.pretrain(model, mean_squared_error, batching='loop')


def test_estimators_reject_chunked_without_chunk_size():
  with pytest.raises(ValueError, match='positive int chunk_size'):
    jmeta.maml(
      jmeta.mlp((4,), 1),
      mean_squared_error,
      inner_steps=1,
      inner_learning_rate=0.1,
      batching='chunked',
    )


def test_estimators_reject_both_inner_optimizer_and_learning_rate():
  model = jmeta.mlp((4,), 1)
  for make in (jmeta.maml, jmeta.fomaml, jmeta.reptile):
    with pytest.raises(
      ValueError, match='either an inner optimizer or an inner learning'
    ):
      make(
        model,
        mean_squared_error,
        inner_steps=1,
        inner_learning_rate=0.1,
        inner_optimizer=optax.sgd(0.1),
      )
    with pytest.raises(ValueError, match='needs a learning_rate'):
      make(model, mean_squared_error, inner_steps=1)


# --- Memory bounds: rematerialised inner steps and chunked tasks --------------------


def contains_remat(jaxpr) -> bool:
  # jax.checkpoint shows up as a 'remat' (remat2) or 'checkpoint' equation, nested
  # jaxprs included, in the printed program.
  text = str(jaxpr)
  return 'remat' in text or 'checkpoint' in text


@pytest.mark.parametrize(
  'make, k', [(jmeta.maml, 1), (jmeta.maml, 3), (jmeta.fomaml, 2)]
)
def test_remat_gives_the_same_meta_gradient(x64, make, k):
  model, params, batch = mlp_setup()
  results, programs = [], []
  for remat in (False, True):
    est = make(
      model,
      mean_squared_error,
      inner_steps=k,
      inner_learning_rate=0.05,
      batching='vmap',
      remat=remat,
    )
    results.append(jax.jit(est.meta_gradient)(params, batch))
    programs.append(jax.make_jaxpr(est.meta_gradient)(params, batch))
  chex.assert_trees_all_close(results[1], results[0], rtol=1e-12, atol=1e-15)
  # The option really changes the program: each inner step is a checkpoint.
  assert not contains_remat(programs[0])
  assert contains_remat(programs[1])


def test_maml_chunked_over_tasks_equals_vmap(x64):
  model, params, batch = mlp_setup()
  results = [
    jax.jit(
      jmeta.maml(
        model,
        mean_squared_error,
        inner_steps=2,
        inner_learning_rate=0.05,
        batching=strategy,
        chunk_size=chunk_size,
      ).meta_gradient
    )(params, batch)
    for strategy, chunk_size in (('vmap', None), ('chunked', 2))
  ]
  chex.assert_trees_all_close(results[1], results[0], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize('batching', ['vmap', 'map'])
def test_reptile_on_minibatches_equals_a_loop_over_the_drawn_batches(x64, batching):
  rng = np.random.default_rng(11)
  num_tasks, n, features = 3, 6, 2
  x = rng.normal(size=(num_tasks, n, features))
  y = rng.normal(size=(num_tasks, n, 1))
  batch = jmeta.TaskBatch(*map(jnp.asarray, (x, y, x[:, :2], y[:, :2])))
  model = jmeta.mlp((), 1)
  params = model.init(jax.random.key(0), jnp.zeros((1, features)))
  params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
  est = jmeta.reptile(
    model,
    jmeta.losses.mean_squared_error,
    inner_steps=4,  # 4 batches of 4 straddle an epoch of 6 examples
    inner_learning_rate=0.1,
    inner_batch_size=4,
    batching=batching,
  )
  grads, metrics = jax.jit(est.meta_gradient)(params, batch)

  loss = lambda p, xs, ys: jmeta.losses.mean_squared_error(model.apply(p, xs), ys)  # noqa: E731
  deltas, support_losses = [], []
  for i in range(num_tasks):
    key = jmeta.inner_loop.data_key(batch.support_inputs[i])
    phi = params
    for idx in np.asarray(jmeta.inner_loop.minibatch_indices(key, n, 4, 4)):
      g = jax.grad(loss)(phi, x[i][idx], y[i][idx])
      phi = jax.tree.map(lambda p, gi: p - 0.1 * gi, phi, g)
    deltas.append(jax.tree.map(jnp.subtract, params, phi))
    support_losses.append(loss(params, x[i], y[i]))
  expected = jax.tree.map(lambda *d: jnp.mean(jnp.stack(d), 0), *deltas)
  chex.assert_trees_all_close(grads, expected, rtol=1e-10, atol=1e-12)
  # The reported support loss is the whole support set's, before adaptation.
  np.testing.assert_allclose(metrics['support_loss'], np.mean(support_losses))


def test_reptile_rejects_an_inner_batch_larger_than_the_support_set():
  batch = small_regression_batch()
  model = jmeta.mlp((), 1)
  params = model.init(jax.random.key(0), batch.support_inputs[0])
  n = batch.support_inputs.shape[1]
  est = jmeta.reptile(
    model,
    jmeta.losses.mean_squared_error,
    inner_steps=2,
    inner_learning_rate=0.1,
    inner_batch_size=n + 1,
  )
  with pytest.raises(ValueError, match=f'inner batch size {n + 1} exceeds the {n}'):
    est.meta_gradient(params, batch)
  with pytest.raises(ValueError, match='positive Python int'):
    jmeta.reptile(
      model,
      jmeta.losses.mean_squared_error,
      inner_steps=2,
      inner_learning_rate=0.1,
      inner_batch_size=0,
    )


def test_maml_on_minibatches_differentiates_through_the_drawn_batches(x64):
  # inner_batch_size is one of the options every gradient factory takes; with MAML
  # the meta-gradient is exact second order through the minibatched inner loop.
  rng = np.random.default_rng(12)
  num_tasks, n, features = 2, 6, 2
  x = rng.normal(size=(num_tasks, n, features))
  y = rng.normal(size=(num_tasks, n, 1))
  qx, qy = rng.normal(size=(num_tasks, 3, features)), rng.normal(size=(num_tasks, 3, 1))
  batch = jmeta.TaskBatch(*map(jnp.asarray, (x, y, qx, qy)))
  model = jmeta.mlp((4,), 1)
  params = model.init(jax.random.key(1), jnp.zeros((1, features)))
  params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
  est = jmeta.maml(
    model,
    jmeta.losses.mean_squared_error,
    inner_steps=3,
    inner_learning_rate=0.1,
    inner_batch_size=4,
  )
  grads, _ = jax.jit(est.meta_gradient)(params, batch)

  loss = lambda p, xs, ys: jmeta.losses.mean_squared_error(model.apply(p, xs), ys)  # noqa: E731

  def query_loss(params, i):
    key = jmeta.inner_loop.data_key(batch.support_inputs[i])
    phi = params
    for idx in np.asarray(jmeta.inner_loop.minibatch_indices(key, n, 4, 3)):
      g = jax.grad(loss)(phi, x[i][idx], y[i][idx])
      phi = jax.tree.map(lambda p, gi: p - 0.1 * gi, phi, g)
    return loss(phi, qx[i], qy[i])

  expected = jax.grad(lambda p: sum(query_loss(p, i) for i in range(num_tasks)) / 2)(
    params
  )
  chex.assert_trees_all_close(grads, expected, rtol=1e-10, atol=1e-12)
  full = jax.jit(
    jmeta.maml(
      model, jmeta.losses.mean_squared_error, inner_steps=3, inner_learning_rate=0.1
    ).meta_gradient
  )(params, batch)[0]
  # The minibatches matter: full-batch steps give another gradient.
  assert not np.allclose(jax.tree.leaves(full)[0], jax.tree.leaves(grads)[0])


@pytest.mark.parametrize(
  ('factory', 'option', 'match'),
  [
    (jmeta.reptile, {'remat': True}, 'the reptile estimator does not differentiate'),
    (
      jmeta.imaml,
      {'inner_batch_size': 2, 'regularization': 1.0},
      'full support set; it takes no head_only rule and no inner_batch_size',
    ),
  ],
)
def test_an_option_a_pairing_cannot_use_is_refused(factory, option, match):
  with pytest.raises(ValueError, match=match):
    factory(
      jmeta.mlp((), 1),
      jmeta.losses.mean_squared_error,
      inner_steps=2,
      inner_learning_rate=0.01,
      **option,
    )


def test_every_gradient_factory_shows_its_options_in_its_signature():
  import inspect  # noqa: PLC0415

  options = set(jmeta.GradientOptions.__annotations__)
  for factory in (
    jmeta.maml,
    jmeta.fomaml,
    jmeta.anil,
    jmeta.meta_sgd,
    jmeta.reptile,
    jmeta.imaml,
  ):
    parameters = inspect.signature(factory).parameters
    assert options <= set(parameters), factory.__name__
    assert parameters['batching'].default == 'auto'
    assert parameters['remat'].default is False
