"""iMAML against closed forms, dense Hessians, finite differences and bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import jmeta
from jmeta.algorithms.imaml import imaml
from jmeta.losses import mean_squared_error

DIM = 3
NUM_TASKS = 3
LAMBDA = 1.0


# --- Quadratic tasks -----------------------------------------------------------------
#
# L_i^support(phi) = 1/2 (phi - c_i)^T A_i (phi - c_i), i.e. 1/2 phi^T A phi - b^T phi
# with b = A c, and L_i^query(phi) = 1/2 (phi - d_i)^T B_i (phi - d_i). The model's
# output is its params; each target packs a task's [A | c] as a (DIM, DIM + 1) array.
# The proximal solution is phi* = (A + lambda I)^{-1} (lambda theta + A c), and
# dphi*/dtheta = lambda (A + lambda I)^{-1} = (I + A / lambda)^{-1}.


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
  return m @ np.transpose(m, (0, 2, 1)) + 0.5 * np.eye(DIM)


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


def converging_sgd(a, lam, tol=1e-13):
  """A learning rate and step count for which SGD on the proximal problem converges.

  Gradient descent on a quadratic with Hessian eigenvalues in [lo, hi] at rate
  2 / (lo + hi) contracts the error by (hi - lo) / (hi + lo) per step.
  """
  eigs = np.linalg.eigvalsh(a) + lam
  lo, hi = eigs.min(), eigs.max()
  rate = (hi - lo) / (hi + lo)
  return 2 / (lo + hi), int(np.ceil(np.log(tol) / np.log(rate)))


def closed_form(theta, a, c, b, d, lam):
  """phi*, the iMAML and first-order gradients and the losses, per task."""
  out = {'phi': [], 'imaml': [], 'first_order': [], 'loss': [], 'support_loss': []}
  for a_i, c_i, b_i, d_i in zip(a, c, b, d):
    m = a_i + lam * np.eye(DIM)
    phi = np.linalg.solve(m, lam * theta + a_i @ c_i)
    query_grad = b_i @ (phi - d_i)
    out['phi'].append(phi)
    out['first_order'].append(query_grad)
    out['imaml'].append(lam * np.linalg.solve(m, query_grad))
    out['loss'].append(0.5 * (phi - d_i) @ b_i @ (phi - d_i))
    out['support_loss'].append(0.5 * (theta - c_i) @ a_i @ (theta - c_i))
  return {name: np.asarray(v) for name, v in out.items()}


def closed_form_meta_loss(a, c, b, d, lam):
  """theta -> mean_i L_i^query(phi_i*(theta)) with phi* by a linear solve, in jnp."""

  def meta_loss(theta):
    m = a + lam * jnp.eye(DIM)
    phi = jnp.linalg.solve(m, (lam * theta + jnp.einsum('tij,tj->ti', a, c))[..., None])
    r = phi[..., 0] - d
    return jnp.mean(0.5 * jnp.einsum('ti,tij,tj->t', r, b, r))

  return meta_loss


def relative_error(x, ref):
  return np.linalg.norm(np.asarray(x) - ref) / np.linalg.norm(ref)


def quadratic_imaml(a, lam, **kwargs):
  lr, steps = converging_sgd(a, lam)
  kwargs = dict(cg_steps=DIM, batching='vmap') | kwargs
  return imaml(
    quadratic_model(),
    quadratic_loss,
    inner_steps=steps,
    inner_learning_rate=lr,
    regularization=lam,
    **kwargs,
  )


@pytest.mark.parametrize('lam', [0.3, LAMBDA, 5.0])
def test_imaml_matches_closed_form_on_quadratic_tasks(x64, lam):
  (a, c, b, d), batch = quadratic_tasks()
  theta = np.random.default_rng(1).normal(size=DIM)
  est = quadratic_imaml(a, lam)
  assert est.name == 'imaml'
  grads, metrics = jax.jit(est.meta_gradient)(jnp.asarray(theta), batch)
  ref = closed_form(theta, a, c, b, d, lam)
  assert grads.dtype == jnp.float64
  assert relative_error(grads, ref['imaml'].mean(0)) <= 1e-8
  # The implicit Jacobian matters: the first-order answer is far away.
  assert relative_error(ref['first_order'].mean(0), ref['imaml'].mean(0)) > 1e-2
  np.testing.assert_allclose(metrics['loss'], ref['loss'].mean(), rtol=1e-10)
  np.testing.assert_allclose(
    metrics['support_loss'], ref['support_loss'].mean(), rtol=1e-10
  )
  # Independently: autodiff through the closed-form proximal solution.
  auto = jax.grad(closed_form_meta_loss(a, c, b, d, lam))(jnp.asarray(theta))
  assert relative_error(grads, np.asarray(auto)) <= 1e-8


def test_reference_pull_back_and_damped_system_match_their_closed_form(x64):
  # aravindr93/imaml_dev: K plain SGD steps on L^support, phi_K = c + (I - a A)^K
  # (theta - c); one pull-back step phi = phi_K - r lambda (phi_K - theta); then
  # ((1 + d) I + A / (lambda + e)) g = B (phi - d_q), solved exactly (CG, DIM steps).
  (a, c, b, d), batch = quadratic_tasks()
  theta = np.random.default_rng(1).normal(size=DIM)
  lam, rate, steps, pull, damp, hdamp = 2.0, 0.05, 4, 0.1, 1.0, 10.0
  est = imaml(
    quadratic_model(),
    quadratic_loss,
    inner_steps=steps,
    inner_learning_rate=rate,
    regularization=lam,
    pull_back_rate=pull,
    cg_steps=DIM,
    cg_damping=damp,
    hessian_damping=hdamp,
    batching='vmap',
  )
  grads, metrics = jax.jit(est.meta_gradient)(jnp.asarray(theta), batch)
  want, losses, ratios = [], [], []
  for a_i, c_i, b_i, d_i in zip(a, c, b, d):
    step = np.linalg.matrix_power(np.eye(DIM) - rate * a_i, steps)
    phi_k = c_i + step @ (theta - c_i)
    phi = phi_k - pull * lam * (phi_k - theta)
    system = (1 + damp) * np.eye(DIM) + a_i / (lam + hdamp)
    want.append(np.linalg.solve(system, b_i @ (phi - d_i)))
    losses.append(0.5 * (phi - d_i) @ b_i @ (phi - d_i))
    proximal_grad = a_i @ (phi - c_i) + lam * (phi - theta)
    ratios.append(np.linalg.norm(proximal_grad) / np.linalg.norm(a_i @ (theta - c_i)))
  assert relative_error(grads, np.mean(want, 0)) <= 1e-10
  np.testing.assert_allclose(metrics['loss'], np.mean(losses), rtol=1e-10)
  # The diagnostic measures the distance from the proximal optimum, which this
  # inner loop does not reach.
  np.testing.assert_allclose(
    metrics['inner_gradient_ratio'], np.mean(ratios), rtol=1e-8
  )
  assert np.mean(ratios) > 1e-2
  np.testing.assert_allclose(metrics['cg_relative_residual'], 0, atol=1e-10)
  # Test-time adaptation takes the same plain steps and pull-back.
  phi0 = c[0] + np.linalg.matrix_power(np.eye(DIM) - rate * a[0], steps) @ (
    theta - c[0]
  )
  adapted = jmeta.imaml_adapt(
    quadratic_model(),
    quadratic_loss,
    jnp.asarray(theta),
    batch.support_inputs[0],
    batch.support_targets[0],
    regularization=lam,
    steps=steps,
    learning_rate=rate,
    pull_back_rate=pull,
  )
  np.testing.assert_allclose(adapted, phi0 - pull * lam * (phi0 - theta), rtol=1e-10)


def test_imaml_with_too_few_cg_steps_is_inexact_and_converges(x64):
  (a, c, b, d), batch = quadratic_tasks(seed=2)
  theta = np.random.default_rng(3).normal(size=DIM)
  ref = closed_form(theta, a, c, b, d, LAMBDA)['imaml'][0]
  task = jmeta.Task(*(x[0] for x in batch))
  errors = []
  for cg_steps in range(1, DIM + 1):
    est = quadratic_imaml(a, LAMBDA, cg_steps=cg_steps)
    grads, _ = jax.jit(est.task_gradient)(jnp.asarray(theta), task)
    errors.append(relative_error(grads, ref))
  # CG's error norm falls monotonically and is zero after DIM steps.
  assert errors[0] > 1e-3
  assert all(e1 < e0 for e0, e1 in zip(errors, errors[1:]))
  assert errors[-1] <= 1e-8


def test_imaml_cg_tolerance_stops_early(x64):
  (a, c, b, d), batch = quadratic_tasks(seed=2)
  theta = jnp.asarray(np.random.default_rng(3).normal(size=DIM))
  exact = jax.jit(quadratic_imaml(a, LAMBDA, cg_steps=DIM).meta_gradient)
  loose = jax.jit(
    quadratic_imaml(a, LAMBDA, cg_steps=DIM, cg_tolerance=0.5).meta_gradient
  )
  ref = closed_form(np.asarray(theta), a, c, b, d, LAMBDA)['imaml'].mean(0)
  assert relative_error(exact(theta, batch).grads, ref) <= 1e-8
  assert relative_error(loose(theta, batch).grads, ref) > 1e-6


def test_imaml_batch_mean_is_the_mean_of_task_gradients(x64):
  (a, *_), batch = quadratic_tasks(seed=4)
  theta = jnp.asarray(np.random.default_rng(5).normal(size=DIM))
  results = {
    batching: jax.jit(quadratic_imaml(a, LAMBDA, batching=batching).meta_gradient)(
      theta, batch
    )
    for batching in ('vmap', 'map')
  }
  task_gradient = jax.jit(quadratic_imaml(a, LAMBDA).task_gradient)
  per_task = [
    task_gradient(theta, jmeta.Task(*(x[i] for x in batch))) for i in range(NUM_TASKS)
  ]
  expected = jax.tree.map(lambda *v: jnp.mean(jnp.stack(v), axis=0), *per_task)
  for result in results.values():
    chex.assert_trees_all_close(result, expected, rtol=1e-12, atol=1e-14)


def test_imaml_depends_only_on_the_proximal_solution_not_the_path(x64):
  (a, c, b, d), batch = quadratic_tasks(seed=6)
  theta = np.random.default_rng(7).normal(size=DIM)
  lr, steps = converging_sgd(a, LAMBDA)
  # Heavy-ball momentum reaches the same phi* along another path.
  est = imaml(
    quadratic_model(),
    quadratic_loss,
    inner_steps=3 * steps,
    inner_optimizer=optax.sgd(lr / 2, momentum=0.5),
    regularization=LAMBDA,
    cg_steps=DIM,
  )
  grads, _ = jax.jit(est.meta_gradient)(jnp.asarray(theta), batch)
  ref = closed_form(theta, a, c, b, d, LAMBDA)['imaml'].mean(0)
  assert relative_error(grads, ref) <= 1e-8


# --- A small nonlinear model ---------------------------------------------------------
#
# A tanh MLP of 25 params on one sinusoid task. The support Hessian has negative
# eigenvalues (about -1.5 at phi*), which lambda = 2 dominates, so I + H / lambda
# is positive definite; SGD at 0.1 for 500 steps solves the proximal problem to
# rounding error.

MLP_LAMBDA = 2.0
MLP_LR = 0.1
MLP_STEPS = 500


def mlp_setup():
  """A float64 tanh MLP, its params and a one-task sinusoid batch (inside ``x64``)."""
  model = jmeta.mlp((8,), 1, activation=jnp.tanh)
  family = jmeta.sinusoid_tasks(5, 5, amplitude=(0.5, 1.0), dtype=jnp.float64)
  batch = family.sample(jax.random.key(0), 1)
  params = model.init(jax.random.key(1), batch.support_inputs[0])
  params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
  return model, params, batch


def mlp_reference(model, params, batch):
  """The proximal solution and the meta-loss, written independently on flat params."""
  flat, unravel = ravel_pytree(params)
  xs, ys, xq, yq = (x[0] for x in batch)

  def support(v):
    return mean_squared_error(model.apply(unravel(v), xs), ys)

  def query(v):
    return mean_squared_error(model.apply(unravel(v), xq), yq)

  def solve(theta):
    prox = lambda v: support(v) + 0.5 * MLP_LAMBDA * jnp.sum((v - theta) ** 2)  # noqa: E731
    step = lambda _, v: v - MLP_LR * jax.grad(prox)(v)  # noqa: E731
    return jax.lax.fori_loop(0, MLP_STEPS, step, theta)

  return flat, support, query, jax.jit(solve)


def test_imaml_on_mlp_matches_dense_implicit_gradient(x64):
  model, params, batch = mlp_setup()
  flat, support, query, solve = mlp_reference(model, params, batch)
  n = flat.size
  est = imaml(
    model,
    mean_squared_error,
    inner_steps=MLP_STEPS,
    inner_learning_rate=MLP_LR,
    regularization=MLP_LAMBDA,
    cg_steps=n,
  )
  grads, metrics = jax.jit(est.meta_gradient)(params, batch)
  chex.assert_tree_all_finite(grads)

  phi = solve(flat)
  hessian = np.asarray(jax.jit(jax.hessian(support))(phi))
  assert (
    np.linalg.eigvalsh(hessian).min()
    < 0
    < 1 + np.linalg.eigvalsh(hessian).min() / MLP_LAMBDA
  )
  dense = np.linalg.solve(np.eye(n) + hessian / MLP_LAMBDA, jax.grad(query)(phi))
  assert relative_error(ravel_pytree(grads)[0], dense) <= 1e-8
  np.testing.assert_allclose(metrics['loss'], query(phi), rtol=1e-12)
  np.testing.assert_allclose(metrics['support_loss'], support(flat), rtol=1e-12)

  # And the implicit function theorem itself: finite differences of the converged
  # meta-loss theta -> L_query(phi*(theta)), five-point stencil.
  meta_loss = jax.jit(lambda theta: query(solve(theta)))
  # The meta-loss is strongly curved: the stencil's O(h^4) error needs h this small.
  h = 3e-5
  for key in jax.random.split(jax.random.key(2), 2):
    v = jax.random.normal(key, flat.shape, flat.dtype)
    at = [meta_loss(flat + s * h * v) for s in (2, 1, -1, -2)]
    fd = (-at[0] + 8 * at[1] - 8 * at[2] + at[3]) / (12 * h)
    np.testing.assert_allclose(jnp.vdot(ravel_pytree(grads)[0], v), fd, rtol=1e-8)


def test_imaml_trains_an_mlp_on_sinusoids():
  model = jmeta.mlp((8,), 1)
  batch = jmeta.sinusoid_tasks(5, 10).sample(jax.random.key(0), 4)
  params = model.init(jax.random.key(1), batch.support_inputs[0])
  est = imaml(
    model,
    mean_squared_error,
    inner_steps=5,
    inner_learning_rate=0.01,
    regularization=1.0,
    cg_steps=5,
  )
  trainer = jmeta.make_meta_trainer(est, optax.adam(1e-3))
  state = trainer.init(params)
  losses = []
  for _ in range(30):
    state, metrics = trainer.step(state, batch)
    losses.append(float(metrics['loss']))
  jmeta.raise_if_nonfinite(state)
  chex.assert_tree_all_finite(state.params)
  assert np.all(np.isfinite(losses))
  # Small outer steps on a fixed batch: once Adam's moments settle, the query loss
  # falls at every step.
  assert np.all(np.diff(losses[10:]) < 0)
  assert losses[-1] < 0.995 * losses[0]
  assert metrics['support_loss'].shape == ()


# --- Bad arguments -------------------------------------------------------------------


def make(**kwargs):
  kwargs = dict(inner_steps=1, inner_learning_rate=0.1, regularization=1.0) | kwargs
  return imaml(jmeta.mlp((4,), 1), mean_squared_error, **kwargs)


@pytest.mark.parametrize(
  'value', [0.0, -1.0, float('nan'), float('inf'), True, '1', None]
)
def test_imaml_rejects_bad_regularization(value):
  with pytest.raises(ValueError, match='regularization must be'):
    make(regularization=value)


@pytest.mark.parametrize('value', [0, -1, 1.5, True, None])
def test_imaml_rejects_bad_cg_steps(value):
  with pytest.raises(ValueError, match='cg_steps must be'):
    make(cg_steps=value)


@pytest.mark.parametrize('value', [-1e-3, float('nan'), '0'])
def test_imaml_rejects_bad_cg_tolerance(value):
  with pytest.raises(ValueError, match='cg_tolerance must be'):
    make(cg_tolerance=value)


@pytest.mark.parametrize('value', [-1, 1.5, None])
def test_imaml_rejects_bad_inner_steps(value):
  with pytest.raises(ValueError, match='inner_steps must be'):
    make(inner_steps=value)


def test_imaml_rejects_bad_inner_optimizer_and_batching():
  with pytest.raises(ValueError, match='needs a learning_rate'):
    make(inner_learning_rate=None)
  with pytest.raises(ValueError, match='either an inner optimizer or an inner'):
    make(inner_optimizer=optax.sgd(0.1))
  with pytest.raises(ValueError, match="unknown batching strategy 'pmap'"):
    make(batching='pmap')
  with pytest.raises(TypeError, match='regularization'):
    imaml(
      jmeta.mlp((4,), 1), mean_squared_error, inner_steps=1, inner_learning_rate=0.1
    )


@pytest.mark.parametrize(
  ('field', 'value', 'match'),
  [
    ('pull_back_rate', 0.6, 'moves phi past theta'),
    ('pull_back_rate', -0.1, 'pull-back rate must be'),
    ('cg_damping', -1.0, 'cg_damping must be'),
    ('hessian_damping', float('nan'), 'hessian_damping must be'),
  ],
)
def test_imaml_rejects_bad_reference_options(field, value, match):
  with pytest.raises(ValueError, match=match):
    make(regularization=2.0, **{field: value})


def test_imaml_refuses_sgd_rates_that_diverge_on_the_proximal_term():
  # eta * lambda >= 2 flips and grows phi - theta at every step after the first.
  with pytest.raises(ValueError, match=r'below 2 / regularization = 1\b'):
    make(inner_steps=2, inner_learning_rate=1.0, regularization=2.0)
  with pytest.raises(ValueError, match='cannot solve'):
    jmeta.imaml_adapt(
      jmeta.mlp((4,), 1),
      mean_squared_error,
      {},
      np.zeros((3, 1)),
      np.zeros((3, 1)),
      steps=3,
      regularization=0.5,
      learning_rate=4.0,
    )
  with pytest.raises(ValueError, match='default_estimators, imaml_regularization'):
    jmeta.default_estimators(
      jmeta.mlp((4,), 1),
      mean_squared_error,
      inner_steps=5,
      inner_learning_rate=2.0,
      imaml_regularization=1.0,
    )
  # One step starts at phi = theta, where the proximal term has no gradient.
  assert make(inner_steps=1, inner_learning_rate=1.0, regularization=2.0)
  assert make(inner_steps=5, inner_learning_rate=0.99, regularization=2.0)


def test_imaml_accepts_numpy_scalars():
  est = make(
    inner_steps=np.int64(2), cg_steps=np.int32(3), regularization=np.float32(0.5)
  )
  assert est.name == 'imaml'


def test_imaml_adapt_reaches_the_proximal_solution(x64):
  (a, c, b, d), batch = quadratic_tasks()
  model = quadratic_model()
  theta = model.init(jax.random.key(3), None)
  lr, steps = converging_sgd(a[0], LAMBDA)
  phi = jmeta.imaml_adapt(
    model,
    quadratic_loss,
    theta,
    batch.support_inputs[0],
    batch.support_targets[0],
    steps=steps,
    regularization=LAMBDA,
    learning_rate=lr,
  )
  ref = closed_form(np.asarray(theta), a, c, b, d, LAMBDA)['phi'][0]
  np.testing.assert_allclose(phi, ref, rtol=1e-10, atol=1e-12)
  with pytest.raises(ValueError, match='regularization'):
    jmeta.imaml_adapt(
      model,
      quadratic_loss,
      theta,
      batch.support_inputs[0],
      batch.support_targets[0],
      steps=1,
      regularization=0.0,
      learning_rate=lr,
    )


def test_diagnostics_match_hand_computed_inner_and_cg_errors(x64):
  # A few SGD steps leave the proximal problem unsolved and one CG step leaves the
  # system unsolved; both metrics must equal the errors computed here by hand.
  (a, c, b, d), batch = quadratic_tasks(seed=3)
  theta = np.random.default_rng(4).normal(size=DIM)
  lr, steps = 0.05, 3
  learner = imaml(
    quadratic_model(),
    quadratic_loss,
    inner_steps=steps,
    inner_learning_rate=lr,
    regularization=LAMBDA,
    cg_steps=1,
    batching='map',
  )
  _, metrics = learner.meta_gradient(jnp.asarray(theta), batch)
  inner, residual = [], []
  for i in range(NUM_TASKS):
    phi = theta.copy()
    for _ in range(steps):
      phi = phi - lr * (a[i] @ (phi - c[i]) + LAMBDA * (phi - theta))
    gradient = a[i] @ (phi - c[i]) + LAMBDA * (phi - theta)
    inner.append(np.linalg.norm(gradient) / np.linalg.norm(a[i] @ (theta - c[i])))
    rhs = b[i] @ (phi - d[i])
    system = np.eye(DIM) + a[i] / LAMBDA
    x = (rhs @ rhs) / (rhs @ system @ rhs) * rhs  # one CG step from 0
    residual.append(np.linalg.norm(system @ x - rhs) / np.linalg.norm(rhs))
  np.testing.assert_allclose(
    metrics['inner_gradient_ratio'], np.mean(inner), rtol=1e-10
  )
  np.testing.assert_allclose(
    metrics['cg_relative_residual'], np.mean(residual), rtol=1e-10
  )
  assert np.mean(inner) > 0.1 and np.mean(residual) > 1e-3  # both really unsolved


def test_diagnostics_vanish_when_inner_loop_and_cg_converge(x64):
  (a, _, _, _), batch = quadratic_tasks(seed=5)
  lr, steps = converging_sgd(a, LAMBDA)
  learner = imaml(
    quadratic_model(),
    quadratic_loss,
    inner_steps=steps,
    inner_learning_rate=lr,
    regularization=LAMBDA,
    cg_steps=DIM,  # CG is exact in DIM steps on a DIM-dimensional system
  )
  _, metrics = learner.meta_gradient(jnp.ones(DIM), batch)
  assert metrics['inner_gradient_ratio'] < 1e-10
  assert metrics['cg_relative_residual'] < 1e-10
