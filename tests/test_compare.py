"""Comparing meta-gradient estimators: tree math against numpy and closed forms."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmeta
from jmeta.algorithms.maml_plus_plus import msl_weights
from jmeta.compare import (
  GradientComparison,
  compare_estimators,
  default_estimators,
  layer_cosines,
  tree_cosine,
  tree_norm_ratio,
  tree_relative_error,
)
from jmeta.losses import mean_squared_error

DIM = 3
NUM_TASKS = 4
ALPHA = 0.1


def np_cosine(a, b):
  return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


def flat(tree):
  return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def two_layer_trees(seed=0):
  rng = np.random.default_rng(seed)

  def tree():
    return {
      'layer_0': {'w': rng.normal(size=(3, 2)), 'b': rng.normal(size=(2,))},
      'layer_1': {'w': rng.normal(size=(2, 1)), 'b': rng.normal(size=(1,))},
    }

  return tree(), tree()


# --- Tree math ----------------------------------------------------------------------


def test_identical_trees_give_exactly_one_and_zero(x64):
  # The textbook dot / (||a|| ||b||) misses 1 here: fl(sqrt(2) ** 2) = 2 + 4.4e-16.
  ones = jnp.ones(2, jnp.float64)
  naive = jnp.vdot(ones, ones) / (jnp.linalg.norm(ones) * jnp.linalg.norm(ones))
  assert naive != 1.0
  a, _ = two_layer_trees()
  big = {'x': jnp.asarray([1e200, 3e199]), 'y': jnp.asarray([1e-200])}
  for tree in (ones, a, big):
    copy = jax.tree.map(lambda x: jnp.array(x, copy=True), tree)
    for fn in (lambda f: f, jax.jit):
      assert fn(tree_cosine)(tree, copy) == 1.0
      assert fn(tree_norm_ratio)(tree, copy) == 1.0
      assert fn(tree_relative_error)(tree, copy) == 0.0
      assert all(v == 1.0 for v in fn(layer_cosines)(tree, copy).values())


def test_tree_math_matches_numpy(x64):
  a, b = two_layer_trees(seed=1)
  fa, fb = flat(a), flat(b)
  np.testing.assert_allclose(tree_cosine(a, b), np_cosine(fa, fb), rtol=1e-12)
  np.testing.assert_allclose(
    tree_norm_ratio(a, b), np.linalg.norm(fa) / np.linalg.norm(fb), rtol=1e-12
  )
  np.testing.assert_allclose(
    tree_relative_error(a, b),
    np.linalg.norm(fa - fb) / np.linalg.norm(fb),
    rtol=1e-12,
  )
  # Opposite directions: -1, clipped so as never to pass it.
  minus = jax.tree.map(lambda x: -x, a)
  np.testing.assert_allclose(tree_cosine(a, minus), -1.0, rtol=1e-15)
  assert tree_cosine(a, minus) >= -1.0


def test_layer_cosines_match_numpy_per_key(x64):
  a, b = two_layer_trees(seed=2)
  got = layer_cosines(a, b)
  expected = {}
  for layer in ('layer_0', 'layer_1'):
    expected[layer] = np_cosine(flat(a[layer]), flat(b[layer]))
    for leaf in ('w', 'b'):
      expected[f'{layer}/{leaf}'] = np_cosine(
        np.ravel(a[layer][leaf]), np.ravel(b[layer][leaf])
      )
  assert set(got) == set(expected)
  for key, value in expected.items():
    np.testing.assert_allclose(got[key], value, rtol=1e-12, err_msg=key)


def test_single_array_has_no_layers_and_zero_tree_has_no_angle(x64):
  x = jnp.asarray([1.0, 2.0])
  assert layer_cosines(x, x) == {}
  assert math.isnan(tree_cosine(x, jnp.zeros(2)))
  assert math.isnan(tree_norm_ratio(jnp.zeros(2), jnp.zeros(2)))


def test_tree_math_rejects_different_structures():
  with pytest.raises(ValueError, match='differ in structure'):
    tree_cosine({'a': jnp.ones(2)}, {'b': jnp.ones(2)})
  with pytest.raises(ValueError, match='differ in shape'):
    tree_norm_ratio({'a': jnp.ones(2)}, {'a': jnp.ones(3)})


# --- Quadratic tasks: L_i(theta) = 1/2 (theta - c_i)^T A_i (theta - c_i) -------------
#
# As in test_estimators.py: the model outputs theta; each target packs [A | c].


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


def quadratic_tasks(seed=0):
  rng = np.random.default_rng(seed)

  def spd():
    m = rng.normal(size=(NUM_TASKS, DIM, DIM))
    return m @ np.transpose(m, (0, 2, 1)) / DIM + 0.5 * np.eye(DIM)

  a, b = spd(), spd()
  c, d = rng.normal(size=(2, NUM_TASKS, DIM))
  pack = lambda m, v: np.concatenate([m, v[..., None]], axis=-1)[:, None]  # noqa: E731
  dummy = jnp.zeros((NUM_TASKS, 1, 1))
  batch = jmeta.TaskBatch(
    dummy, jnp.asarray(pack(a, c)), dummy, jnp.asarray(pack(b, d))
  )
  return (a, c, b, d), batch


def test_one_step_quadratic_matches_hand_computed_agreement(x64):
  (a, c, b, d), batch = quadratic_tasks()
  theta = np.random.default_rng(1).normal(size=DIM)
  ests = default_estimators(
    quadratic_model(),
    quadratic_loss,
    inner_steps=1,
    inner_learning_rate=ALPHA,
    batching='vmap',
  )
  assert list(ests) == [
    'maml',
    'fomaml',
    'reptile',
    'imaml',
    'maml++',
    'maml++_first_order',
  ]
  report = compare_estimators(ests, jnp.asarray(theta), batch, timing_repeats=2)

  # One SGD step: phi_i = P_i theta + alpha A_i c_i with P_i = I - alpha A_i, so
  # MAML's gradient is mean_i P_i^T g_i and FOMAML's mean_i g_i, g_i the query
  # gradient B_i (phi_i - d_i) at phi_i; Reptile's is mean_i (theta - phi_i).
  p = np.eye(DIM) - ALPHA * a
  phi = np.einsum('nij,j->ni', p, theta) + ALPHA * np.einsum('nij,nj->ni', a, c)
  g = np.einsum('nij,nj->ni', b, phi - d)
  grads = {
    'maml': np.einsum('nji,nj->i', p, g) / NUM_TASKS,
    'fomaml': g.mean(0),
    'reptile': (theta - phi).mean(0),
  }
  # With one inner step the multi-step loss is the final loss: MAML++ is MAML, and
  # MAML++ while it anneals the derivative order is first-order MAML.
  grads['maml++'] = grads['maml']
  grads['maml++_first_order'] = grads['fomaml']
  ref = grads['maml']
  assert np.linalg.norm(grads['fomaml'] - ref) / np.linalg.norm(ref) > 1e-2
  for name, grad in grads.items():
    got = report[name]
    np.testing.assert_allclose(got.cosine, np_cosine(grad, ref), rtol=1e-12)
    np.testing.assert_allclose(
      got.norm_ratio, np.linalg.norm(grad) / np.linalg.norm(ref), rtol=1e-12
    )
    np.testing.assert_allclose(
      got.relative_error,
      np.linalg.norm(grad - ref) / np.linalg.norm(ref),
      rtol=1e-12,
      atol=1e-15,
    )
  assert (report['maml'].cosine, report['maml'].norm_ratio) == (1.0, 1.0)
  assert report['maml'].relative_error == 0.0
  # A single vector of params has no layers.
  assert report['maml'].layer_cosine == {}
  loss = 0.5 * np.einsum('ni,nij,nj->n', phi - d, b, phi - d).mean()
  np.testing.assert_allclose(report['fomaml'].metrics['loss'], loss, rtol=1e-12)

  assert list(report) == list(ests)
  for got in report.values():
    assert isinstance(got, GradientComparison)
    assert math.isfinite(got.cosine)
    assert isinstance(got.seconds, float) and got.seconds > 0
    assert isinstance(got.compile_seconds, float) and got.compile_seconds > 0
    assert got.peak_bytes is None or (
      isinstance(got.peak_bytes, int) and got.peak_bytes > 0
    )
    assert all(isinstance(v, float) for v in got.metrics.values())


@pytest.mark.parametrize('iteration', [0, 7, 40])
def test_maml_plus_plus_is_the_msl_weighted_sum_of_maml_gradients(x64, iteration):
  # sum_j w_j(t) L(phi_j) differentiates into sum_j w_j(t) MAML_j, MAML_j the
  # gradient through j inner steps; likewise for the first-order versions while
  # the derivative order anneals (t < N), and plain MAML_K from N on.
  _, batch = quadratic_tasks(seed=2)
  model, steps, anneal = quadratic_model(), 3, 20
  theta = jnp.asarray(np.random.default_rng(3).normal(size=DIM))
  weights = np.asarray(msl_weights(iteration, steps, anneal))
  for first_order, reference in ((False, jmeta.maml), (True, jmeta.fomaml)):
    est = jmeta.maml_plus_plus_at(
      model,
      quadratic_loss,
      inner_steps=steps,
      inner_learning_rate=ALPHA,
      iteration=iteration,
      anneal_iterations=anneal,
      first_order_while_annealing=first_order,
      batching='vmap',
    )
    if iteration >= anneal:
      reference = jmeta.maml
    expected = sum(
      w
      * reference(model, quadratic_loss, inner_steps=j, inner_learning_rate=ALPHA)
      .meta_gradient(theta, batch)
      .grads
      for j, w in enumerate(weights, start=1)
    )
    got = jax.jit(est.meta_gradient)(theta, batch).grads
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # One task's gradient is the meta-gradient of a batch of that task alone.
    one = jax.tree.map(lambda x: x[:1], batch)
    np.testing.assert_allclose(
      est.task_gradient(theta, jmeta.Task(*jax.tree.map(lambda x: x[0], one))).grads,
      est.meta_gradient(theta, one).grads,
      rtol=1e-12,
    )
  if iteration < anneal:
    assert weights[0] > 0  # the intermediate steps count


# --- A small MLP: per-layer cosines against a numpy reference ----------------------
#
# One hidden tanh layer, MSE, one SGD step. The numpy reference below differentiates
# the MLP by hand (backprop) and the meta-loss by central finite differences, so no
# JAX derivative enters the expected values.

MLP_ALPHA = 0.05


def np_mlp_loss_and_grad(params, x, t):
  """MSE of ``tanh(x w0 + b0) w1 + b1`` and its gradient, by hand."""
  l0, l1 = params['layer_0'], params['layer_1']
  h = np.tanh(x @ l0['w'] + l0['b'])
  y = h @ l1['w'] + l1['b']
  dy = 2 * (y - t) / y.size
  dz = (dy @ l1['w'].T) * (1 - h**2)
  grad = {
    'layer_0': {'w': x.T @ dz, 'b': dz.sum(0)},
    'layer_1': {'w': h.T @ dy, 'b': dy.sum(0)},
  }
  return np.mean((y - t) ** 2), grad


def np_sgd_step(params, x, t):
  _, grad = np_mlp_loss_and_grad(params, x, t)
  return jax.tree.map(lambda p, g: p - MLP_ALPHA * g, params, grad)


def np_reference_gradients(params, batch):
  """MAML (finite differences), FOMAML and Reptile meta-gradients, in numpy."""
  tasks = [[np.asarray(f[i]) for f in batch] for i in range(batch.num_tasks)]
  leaves, treedef = jax.tree.flatten(params)
  shapes = [leaf.shape for leaf in leaves]
  theta = np.concatenate([leaf.ravel() for leaf in leaves])

  def unflatten(vector):
    parts = np.split(vector, np.cumsum([int(np.prod(s)) for s in shapes])[:-1])
    return jax.tree.unflatten(treedef, [p.reshape(s) for p, s in zip(parts, shapes)])

  def meta_loss(vector):
    p = unflatten(vector)
    return np.mean(
      [
        np_mlp_loss_and_grad(np_sgd_step(p, xs, ts), xq, tq)[0]
        for xs, ts, xq, tq in tasks
      ]
    )

  eps = 1e-6
  maml = np.array(
    [
      (meta_loss(theta + eps * e) - meta_loss(theta - eps * e)) / (2 * eps)
      for e in np.eye(theta.size)
    ]
  )
  fomaml, reptile = [], []
  for xs, ts, xq, tq in tasks:
    phi = np_sgd_step(params, xs, ts)
    fomaml.append(flat(np_mlp_loss_and_grad(phi, xq, tq)[1]))
    reptile.append(theta - flat(phi))
  grads = {'maml': maml, 'fomaml': np.mean(fomaml, 0), 'reptile': np.mean(reptile, 0)}
  return {name: unflatten(g) for name, g in grads.items()}


@pytest.fixture(scope='module')
def mlp_comparison():
  """A report on a small MLP, with its params and batch (float64)."""
  with jax.enable_x64(True):
    model = jmeta.mlp((4,), 1, activation=jnp.tanh)
    batch = jmeta.sinusoid_tasks(3, 4, dtype=jnp.float64).sample(jax.random.key(0), 2)
    params = model.init(jax.random.key(1), batch.support_inputs[0])
    params = jax.tree.map(lambda x: x.astype(jnp.float64), params)
    kwargs = dict(inner_steps=1, inner_learning_rate=MLP_ALPHA, batching='vmap')
    ests = {
      'maml': jmeta.maml(model, mean_squared_error, **kwargs),
      'fomaml': jmeta.fomaml(model, mean_squared_error, **kwargs),
      'reptile': jmeta.reptile(model, mean_squared_error, **kwargs),
      'meta_sgd': jmeta.meta_sgd(model, mean_squared_error, batching='vmap'),
    }
    report = compare_estimators(
      ests,
      params,
      batch,
      params_for={'meta_sgd': jmeta.meta_sgd_params(params, MLP_ALPHA)},
      timing_repeats=1,
    )
    params, batch = jax.tree.map(np.asarray, (params, batch))
  return report, params, batch


def test_mlp_agreement_and_layer_cosines_match_a_numpy_reference(mlp_comparison):
  report, params, batch = mlp_comparison
  grads = np_reference_gradients(params, batch)
  ref = grads['maml']
  layers = {'layer_0', 'layer_0/w', 'layer_0/b', 'layer_1', 'layer_1/w', 'layer_1/b'}
  for name in ('fomaml', 'reptile'):
    got, g = report[name], grads[name]
    # First order really differs from second order here, by a margin the finite
    # differences (error ~1e-9) cannot close.
    assert got.cosine < 1 - 1e-3
    np.testing.assert_allclose(got.cosine, np_cosine(flat(g), flat(ref)), atol=1e-7)
    np.testing.assert_allclose(
      got.norm_ratio, np.linalg.norm(flat(g)) / np.linalg.norm(flat(ref)), rtol=1e-6
    )
    np.testing.assert_allclose(
      got.relative_error,
      np.linalg.norm(flat(g) - flat(ref)) / np.linalg.norm(flat(ref)),
      rtol=1e-6,
    )
    assert set(got.layer_cosine) == layers
    for key, value in got.layer_cosine.items():
      layer, _, leaf = key.partition('/')
      a, b = (g[layer][leaf], ref[layer][leaf]) if leaf else (g[layer], ref[layer])
      np.testing.assert_allclose(
        value, np_cosine(flat(a), flat(b)), atol=1e-7, err_msg=f'{name} {key}'
      )
  # Meta-SGD with every step size at MAML's rate: its init gradient is MAML's.
  got = report['meta_sgd']
  assert set(got.layer_cosine) == layers
  np.testing.assert_allclose(got.cosine, 1.0, rtol=1e-12)
  assert got.relative_error < 1e-10
  np.testing.assert_allclose(
    got.metrics['loss'], report['maml'].metrics['loss'], rtol=1e-12
  )
  # The metrics' loss is the query loss after the inner step, as in numpy.
  tasks = [[f[i] for f in batch] for i in range(len(batch[0]))]
  loss = np.mean(
    [
      np_mlp_loss_and_grad(np_sgd_step(params, xs, ts), xq, tq)[0]
      for xs, ts, xq, tq in tasks
    ]
  )
  np.testing.assert_allclose(report['fomaml'].metrics['loss'], loss, rtol=1e-12)


# --- The printed table ----------------------------------------------------------------


def test_format_comparison_prints_a_row_per_estimator_and_layers_on_request(
  mlp_comparison,
):
  report, _, _ = mlp_comparison
  text = jmeta.format_comparison(report)
  header, *rows = text.splitlines()
  assert header.split() == [
    'estimator',
    'cosine',
    'norm',
    'ratio',
    'rel.',
    'error',
    'time',
    '(ms)',
    'compile',
    '(s)',
    'memory',
    '(MiB)',
  ]
  assert [row.split()[0] for row in rows] == list(report)
  for row, c in zip(rows, report.values()):
    cells = row.split()
    assert len(cells) == 7
    np.testing.assert_allclose(float(cells[1]), c.cosine, atol=5e-5)
    np.testing.assert_allclose(float(cells[2]), c.norm_ratio, atol=5e-5)
    np.testing.assert_allclose(float(cells[3]), c.relative_error, rtol=5e-3, atol=5e-5)
    np.testing.assert_allclose(float(cells[4]), 1e3 * c.seconds, atol=5e-3)
    np.testing.assert_allclose(float(cells[5]), c.compile_seconds, atol=5e-3)
    memory = f'{c.peak_bytes / 2**20:.1f}' if c.peak_bytes else 'n/a'
    assert cells[6] == memory
  # Columns line up: every value ends where its header does.
  ends = [m.end() for m in re.finditer(r'\S+(?: \S+)?(?=\s{2}|$)', header)][1:]
  for row in rows:
    assert [m.end() for m in re.finditer(r'\S+', row)][1:] == ends
  # MAML's FOMAML row differs from the reference row it is compared against.
  assert rows[1].split()[1] != rows[0].split()[1]
  # A relative error too small for 4 decimals shows in scientific notation, not 0.
  tiny = {'x': report['fomaml']._replace(relative_error=3e-7, peak_bytes=None)}
  cells = jmeta.format_comparison(tiny).splitlines()[1].split()
  assert (cells[3], cells[6]) == ('3.00e-07', 'n/a')

  with_layers = jmeta.format_comparison(report, layers=True).splitlines()
  assert with_layers[0].split() == header.split()
  names = [line.split()[0] for line in with_layers[1:]]
  per_estimator = ['layer_0', 'layer_0/w', 'layer_0/b', 'layer_1', 'layer_1/w']
  per_estimator.append('layer_1/b')
  assert set(names) == set(report) | set(per_estimator)
  for name, c in report.items():
    at = names.index(name)
    block = with_layers[2 + at : 2 + at + len(c.layer_cosine)]
    assert [line.split()[0] for line in block] == list(c.layer_cosine)
    for line, (key, value) in zip(block, c.layer_cosine.items()):
      assert line.startswith('  ' * (1 + key.count('/')) + key)
      assert len(line.split()) == 2
      np.testing.assert_allclose(float(line.split()[1]), value, atol=5e-5)
  assert jmeta.format_comparison(report, precision=6).splitlines()[2].split()[1] == (
    f'{report["fomaml"].cosine:.6f}'
  )


# --- Bad input ----------------------------------------------------------------------


def test_rejects_bad_reference_duplicates_and_unknown_params_for():
  model = quadratic_model()
  maml = jmeta.maml(model, quadratic_loss, inner_steps=1, inner_learning_rate=ALPHA)
  fomaml = jmeta.fomaml(model, quadratic_loss, inner_steps=1, inner_learning_rate=ALPHA)
  _, batch = quadratic_tasks()
  theta = jnp.zeros(DIM)
  with pytest.raises(ValueError, match=r"reference 'imaml' is not among .*'maml'"):
    compare_estimators([maml, fomaml], theta, batch, reference='imaml')
  with pytest.raises(ValueError, match=r"duplicate estimator names \['maml'\]"):
    compare_estimators([maml, fomaml, maml], theta, batch)
  with pytest.raises(ValueError, match=r"params_for names \['reptile'\]"):
    compare_estimators([maml], theta, batch, params_for={'reptile': theta})
  with pytest.raises(ValueError, match='timing_repeats must be'):
    compare_estimators([maml], theta, batch, timing_repeats=0)
