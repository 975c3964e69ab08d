"""The MNIST-style optimizee (``mlp_classifiers``) against a hand-written numpy
forward pass, its minibatch stream, and unrolls of a stochastic family."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jmeta import learned_optimizers as lopt

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (12, 28, 28), dtype=np.uint8)
LABELS = RNG.integers(0, 10, (12,), dtype=np.uint8)
SMALL = IMAGES[:, ::7, ::7]  # 4x4 images: the same code, less to compile


def numpy_cross_entropy(params, images, labels, activation):
  """-mean_i log softmax(MLP(x_i))_{y_i}, float64, pixels / 255."""
  x = images.reshape(len(images), -1).astype(np.float64) / 255
  layers = [{k: np.asarray(v, np.float64) for k, v in p.items()} for p in params]
  for layer in layers[:-1]:
    z = x @ layer['w'] + layer['b']
    x = 1 / (1 + np.exp(-z)) if activation == 'sigmoid' else np.maximum(z, 0)
  logits = x @ layers[-1]['w'] + layers[-1]['b']
  logits = logits - logits.max(1, keepdims=True)
  log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  return -np.mean(log_softmax[np.arange(len(labels)), labels])


def larger_params(family, key):
  """Params of the family's shapes, scaled up so the loss is far from log 10."""
  params = family.init(family.sample(key), key)
  return jax.tree.map(lambda x: 30 * x, params)


@pytest.mark.parametrize('hidden, activation', [((20,), 'sigmoid'), ((5, 3), 'relu')])
def test_losses_match_a_numpy_forward_pass(hidden, activation):
  family = lopt.mlp_classifiers(
    IMAGES, LABELS, hidden_sizes=hidden, activation=activation, batch_size=4
  )
  task = family.sample(jax.random.key(1))
  params = larger_params(family, jax.random.key(2))
  widths = [784, *hidden, 10]
  assert [p['w'].shape for p in params] == list(zip(widths[:-1], widths[1:]))
  full = numpy_cross_entropy(params, IMAGES, LABELS, activation)
  np.testing.assert_allclose(family.loss(task, params), full, rtol=1e-5)
  for step in (0, 7):
    rows = np.asarray(lopt.batch_indices(task, jnp.asarray(step), 12, 4))
    want = numpy_cross_entropy(params, IMAGES[rows], LABELS[rows], activation)
    got = family.step_loss(task, params, jnp.asarray(step))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_minibatches_are_a_pure_function_of_task_and_step():
  task = lopt.MLPClassifierTask(jnp.uint32(5))
  batch = lambda t, s=task: lopt.batch_indices(s, jnp.asarray(t), 1000, 16)  # noqa: E731
  np.testing.assert_array_equal(batch(3), batch(3))
  assert not np.array_equal(batch(3), batch(4))
  other = lopt.MLPClassifierTask(jnp.uint32(6))
  assert not np.array_equal(batch(3), batch(3, other))
  assert 0 <= int(batch(3).min()) and int(batch(3).max()) < 1000


def test_init_draws_the_authors_small_gaussian():
  family = lopt.mlp_classifiers(IMAGES, LABELS)
  params = family.init(family.sample(jax.random.key(0)), jax.random.key(1))
  w = np.asarray(params[0]['w'])
  assert w.shape == (784, 20) and abs(w.std() - 0.01) < 0.001


def test_an_unroll_records_the_loss_of_the_next_minibatch():
  family = lopt.mlp_classifiers(SMALL, LABELS, hidden_sizes=(3,), batch_size=4)
  opt = optax.sgd(0.5)
  key = jax.random.key(3)
  states = lopt.init_inner_states(opt, family, key, 1)  # as loss_curves draws them
  state = jax.tree.map(lambda x: x[0], states)
  grads = jax.grad(family.step_loss, 1)(state.task, state.params, jnp.asarray(0))
  after = optax.apply_updates(state.params, jax.tree.map(lambda g: -0.5 * g, grads))
  new, losses = lopt.unroll(opt, family, state, 1)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new.params, after
  )
  want = family.step_loss(state.task, after, jnp.asarray(1))
  np.testing.assert_allclose(losses[0], want, rtol=1e-6)
  curves = lopt.loss_curves(opt, family, key, steps=1, num_tasks=1)
  first = lopt.loss_at_step(family, state.task, state.params, jnp.asarray(0))
  np.testing.assert_allclose(curves[0], [first, want], rtol=1e-6)


def test_truncated_backprop_meta_trains_on_the_stochastic_family():
  family = lopt.mlp_classifiers(SMALL, LABELS, hidden_sizes=(2,), batch_size=4)
  rule = lopt.lstm_rule(hidden_size=3, layers=1)
  est = lopt.truncated_backprop(
    rule, family, steps=4, truncation=2, num_tasks=2, first_order=True
  )
  meta = rule.meta_init(jax.random.key(0))
  state = est.init(meta, jax.random.key(1))
  out, state = jax.jit(est.estimate)(meta, state, jax.random.key(2))
  assert np.all(np.asarray(state.step) == 2)
  assert np.isfinite(out.metrics['loss'])
  assert float(optax.tree.norm(out.grads)) > 0


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="activation must be one of .* got 'tanh'"):
    lopt.mlp_classifiers(IMAGES, LABELS, activation='tanh')
  with pytest.raises(ValueError, match='labels'):
    lopt.mlp_classifiers(IMAGES, LABELS[:3])
