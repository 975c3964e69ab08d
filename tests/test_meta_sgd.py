"""Meta-SGD against MAML, a closed form, finite differences and bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jmeta
from jmeta.algorithms.meta_sgd import meta_sgd, meta_sgd_adapt, meta_sgd_params
from jmeta.gradient_learner import MetaParams
from jmeta.losses import mean_squared_error

NUM_TASKS = 3
DIM = 3


def mlp_setup():
  """A float64 tanh MLP, its params and a sinusoid batch (call inside ``x64``)."""
  model = jmeta.mlp((6,), 1, activation=jnp.tanh)
  batch = jmeta.sinusoid_tasks(4, 5, dtype=jnp.float64).sample(
    jax.random.key(0), NUM_TASKS
  )
  params = model.init(jax.random.key(1), batch.support_inputs[0])
  return model, jax.tree.map(lambda p: p.astype(jnp.float64), params), batch


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


def test_equal_learning_rates_give_mamls_init_gradient(x64):
  model, params, batch = mlp_setup()
  a = 0.07
  maml = jmeta.maml(
    model, mean_squared_error, inner_steps=2, inner_learning_rate=a, batching='vmap'
  )
  est = meta_sgd(model, mean_squared_error, inner_steps=2, batching='vmap')
  assert est.name == 'meta_sgd'
  ref = jax.jit(maml.meta_gradient)(params, batch)
  got = jax.jit(est.meta_gradient)(meta_sgd_params(params, a), batch)
  assert isinstance(got.grads, MetaParams)
  chex.assert_trees_all_close(got.grads.init, ref.grads, rtol=1e-12, atol=1e-14)
  chex.assert_trees_all_close(got.metrics, ref.metrics, rtol=1e-12)
  # The step sizes get a gradient of their own, shaped like the params.
  chex.assert_trees_all_equal_shapes(got.grads.rule, params)
  assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(got.grads[1])) > 1e-6


def test_meta_gradient_matches_finite_differences(x64):
  model, params, batch = mlp_setup()
  # Distinct step sizes per parameter, so alpha ⊙ g is really elementwise.
  key_lr, key_dir = jax.random.split(jax.random.key(2))
  lrs = jax.tree.map(
    lambda r: 0.05 + 0.05 * jax.random.uniform(key_lr, r.shape, r.dtype), params
  )
  meta_params = MetaParams(params, lrs)
  est = meta_sgd(model, mean_squared_error, inner_steps=2, batching='map')
  grads, metrics = jax.jit(est.meta_gradient)(meta_params, batch)

  @jax.jit
  def meta_loss(mp):
    # Independent of the estimator: a Python loop of meta_sgd_adapt + query loss.
    losses = []
    for i in range(NUM_TASKS):
      phi = meta_sgd_adapt(
        model,
        mean_squared_error,
        mp,
        batch.support_inputs[i],
        batch.support_targets[i],
        steps=2,
      )
      losses.append(
        mean_squared_error(
          model.apply(phi, batch.query_inputs[i]), batch.query_targets[i]
        )
      )
    return jnp.mean(jnp.stack(losses))

  np.testing.assert_allclose(metrics['loss'], meta_loss(meta_params), rtol=1e-12)
  zeros = jax.tree.map(jnp.zeros_like, params)
  for k, key in enumerate(jax.random.split(key_dir, 2)):
    direction = random_like(key, params)
    # Along the learning rates alone, then along init and learning rates together.
    direction = MetaParams(zeros if k == 0 else direction, direction)
    fd = directional_fd(meta_loss, meta_params, direction)
    np.testing.assert_allclose(tree_vdot(grads, direction), fd, rtol=1e-6)


# --- A quadratic task: L(theta) = 1/2 theta^T A theta - b^T theta -------------------
#
# The model outputs theta itself; each target row packs [A | b], so the support and
# query losses read their matrices from the task.


def quadratic_model():
  def init(key, example_inputs):
    del example_inputs
    return jax.random.normal(key, (DIM,))

  def apply(theta, inputs, **kwargs):
    del kwargs
    return jnp.broadcast_to(theta, (inputs.shape[0], DIM))

  return jmeta.Model(init, apply)


def quadratic_loss(outputs, targets):
  matrix, vector = targets[..., :-1], targets[..., -1]
  quad = 0.5 * jnp.einsum('ni,nij,nj->n', outputs, matrix, outputs)
  return jnp.mean(quad - jnp.einsum('ni,ni->n', vector, outputs))


@pytest.mark.parametrize('remat', [False, True])
def test_one_step_matches_closed_form_on_a_quadratic(x64, remat):
  rng = np.random.default_rng(0)
  m, n = rng.normal(size=(2, DIM, DIM))
  a, q = m @ m.T / DIM + 0.5 * np.eye(DIM), n @ n.T / DIM + 0.5 * np.eye(DIM)
  b, d, theta = rng.normal(size=(3, DIM))
  alpha = rng.uniform(0.05, 0.2, size=DIM)
  pack = lambda mat, v: jnp.asarray(np.concatenate([mat, v[:, None]], 1)[None, None])  # noqa: E731
  dummy = jnp.zeros((1, 1, 1))
  batch = jmeta.TaskBatch(dummy, pack(a, b), dummy, pack(q, d))
  est = meta_sgd(quadratic_model(), quadratic_loss, remat=remat)
  mp = MetaParams(jnp.asarray(theta), jnp.asarray(alpha))
  grads, metrics = jax.jit(est.meta_gradient)(mp, batch)
  assert ('remat' in str(jax.make_jaxpr(est.meta_gradient)(mp, batch))) == remat

  # phi = theta - alpha ⊙ (A theta - b); with g = Q phi - d the query gradient,
  # dL/dalpha = -(A theta - b) ⊙ g and dL/dtheta = (I - diag(alpha) A)^T g.
  support_grad = a @ theta - b
  phi = theta - alpha * support_grad
  g = q @ phi - d
  np.testing.assert_allclose(grads.rule, -support_grad * g, rtol=1e-12)
  np.testing.assert_allclose(
    grads.init, (np.eye(DIM) - np.diag(alpha) @ a).T @ g, rtol=1e-12
  )
  np.testing.assert_allclose(metrics['loss'], 0.5 * phi @ q @ phi - d @ phi, rtol=1e-12)
  adapted = meta_sgd_adapt(
    quadratic_model(), quadratic_loss, mp, dummy[0], batch.support_targets[0], steps=1
  )
  np.testing.assert_allclose(adapted, phi, rtol=1e-12)


def test_meta_sgd_adapt_with_equal_rates_is_adapt(x64):
  model, params, batch = mlp_setup()
  x, y = batch.support_inputs[0], batch.support_targets[0]
  by_meta_sgd = meta_sgd_adapt(
    model, mean_squared_error, meta_sgd_params(params, 0.1), x, y, steps=3
  )
  by_adapt = jmeta.adapt(
    model, mean_squared_error, params, x, y, steps=3, learning_rate=0.1
  )
  chex.assert_trees_all_close(by_meta_sgd, by_adapt, rtol=1e-12, atol=1e-14)


def test_trainer_learns_init_and_learning_rates():
  model = jmeta.mlp((16,), 1, activation=jnp.tanh)
  tasks = jmeta.sinusoid_tasks(5, 5)
  batch = tasks.sample(jax.random.key(0), 4)
  params = model.init(jax.random.key(1), batch.support_inputs[0])
  est = meta_sgd(model, mean_squared_error, batching='vmap')
  trainer = jmeta.make_meta_trainer(est, optax.adam(1e-2))
  state = trainer.init(meta_sgd_params(params, 0.01))
  losses = []
  for _ in range(10):
    state, metrics = trainer.step(state, batch)
    losses.append(float(metrics['loss']))
  assert np.all(np.isfinite(losses))
  assert losses[-1] < 0.9 * losses[0]
  assert isinstance(state.params, MetaParams)
  lrs = np.concatenate([np.ravel(x) for x in jax.tree.leaves(state.params[1])])
  assert np.ptp(lrs) > 1e-3  # no longer one shared learning rate


# --- Bad input ----------------------------------------------------------------------


@pytest.mark.parametrize('lr', ['0.1', True, None, -0.1, 0.0, float('nan'), np.inf])
def test_meta_sgd_params_rejects_bad_learning_rates(lr):
  params = jmeta.mlp((), 1).init(jax.random.key(0), jnp.zeros((1, 1)))
  with pytest.raises(ValueError, match='learning_rate must be'):
    meta_sgd_params(params, lr)


def test_meta_sgd_params_accepts_numpy_scalars_and_keeps_dtypes():
  params = {'w': jnp.zeros((2, 3), jnp.float32), 'b': jnp.zeros((3,), jnp.float32)}
  mp = meta_sgd_params(params, np.float32(0.5))
  chex.assert_trees_all_equal(
    mp.rule, jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
  )
  chex.assert_trees_all_equal_dtypes(mp.rule, params)


def test_meta_gradient_rejects_params_that_are_not_meta_sgd_params():
  model = jmeta.mlp((), 1)
  params = model.init(jax.random.key(0), jnp.zeros((1, 1)))
  batch = jmeta.sinusoid_tasks(2, 2).sample(jax.random.key(0), 2)
  est = meta_sgd(model, mean_squared_error)
  with pytest.raises(ValueError, match='MetaParams'):
    est.meta_gradient(params, batch)
  lrs = jax.tree.map(lambda p: jnp.zeros((1,)), params)
  with pytest.raises(ValueError, match='shape of its parameter'):
    est.meta_gradient(MetaParams(params, lrs), batch)
  with pytest.raises(ValueError, match='structure of init'):
    est.meta_gradient(MetaParams(params, params['layer_0']), batch)
  with pytest.raises(ValueError, match='MetaParams'):
    meta_sgd_adapt(model, mean_squared_error, params, batch[0][0], batch[1][0], steps=1)


def test_meta_sgd_rejects_bad_arguments():
  model = jmeta.mlp((), 1)
  with pytest.raises(ValueError, match='inner_steps must be'):
    meta_sgd(model, mean_squared_error, inner_steps=-1)
  with pytest.raises(ValueError, match='unknown batching strategy'):
    meta_sgd(model, mean_squared_error, batching='pmap')
  with pytest.raises(ValueError, match='positive int chunk_size'):
    meta_sgd(model, mean_squared_error, batching='chunked')
  mp = meta_sgd_params(model.init(jax.random.key(0), jnp.zeros((1, 1))), 0.1)
  with pytest.raises(ValueError, match='support set is empty'):
    meta_sgd_adapt(
      model, mean_squared_error, mp, jnp.ones((0, 1)), jnp.ones((0, 1)), steps=1
    )
  with pytest.raises(ValueError, match='model.apply does not accept'):
    meta_sgd_adapt(
      model, mean_squared_error, mp, jnp.ones((4, 3)), jnp.ones((4, 1)), steps=1
    )
