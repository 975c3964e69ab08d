"""Evaluation: adaptation curves and confidence intervals against hand computations."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmeta
from jmeta.losses import mean_squared_error


@pytest.mark.parametrize(
  'confidence, z', [(0.95, 1.959963984540054), (0.9, 1.6448536269514722)]
)
def test_mean_confidence_interval_matches_numpy(confidence, z):
  values = np.random.default_rng(0).normal(2.0, 3.0, size=17)
  mean, half = jmeta.mean_confidence_interval(values, confidence)
  n = values.size
  s = np.sqrt(np.sum((values - values.mean()) ** 2) / (n - 1))
  np.testing.assert_allclose(mean, values.sum() / n, rtol=1e-12)
  np.testing.assert_allclose(half, z * s / np.sqrt(n), rtol=1e-9)
  if confidence == 0.95:
    np.testing.assert_allclose(half, 1.96 * s / np.sqrt(n), rtol=1e-4)


def test_mean_confidence_interval_along_an_axis():
  values = np.random.default_rng(1).uniform(size=(3, 9))
  mean, half = jmeta.mean_confidence_interval(values, axis=1)
  assert mean.shape == half.shape == (3,)
  for i in range(3):
    m, h = jmeta.mean_confidence_interval(values[i])
    np.testing.assert_allclose([mean[i], half[i]], [m, h], rtol=1e-12)


def test_mean_confidence_interval_rejects_bad_input():
  with pytest.raises(ValueError, match='at least 2 values'):
    jmeta.mean_confidence_interval([1.0])
  for confidence in (0.0, 1.0, 95):
    with pytest.raises(ValueError, match=r'confidence must be in \(0, 1\)'):
      jmeta.mean_confidence_interval([1.0, 2.0], confidence)


@pytest.fixture(scope='module')
def curve_setup():
  model = jmeta.mlp((8,), 1, activation=jnp.tanh)
  batch = jmeta.sinusoid_tasks(5, 7).sample(jax.random.key(0), 4)
  params = model.init(jax.random.key(1), batch.support_inputs[0])
  return model, params, batch


def test_adaptation_curves_equal_query_loss_after_k_adapt_steps(curve_setup):
  model, params, batch = curve_setup
  steps = 3
  curves = jmeta.adaptation_curves(
    model,
    mean_squared_error,
    params,
    batch,
    steps=steps,
    learning_rate=0.05,
    batching='vmap',
  )
  assert curves.shape == (batch.num_tasks, steps + 1)

  @functools.partial(jax.jit, static_argnums=0)
  def query_loss_after(k, i):
    phi = jmeta.adapt(
      model,
      mean_squared_error,
      params,
      batch.support_inputs[i],
      batch.support_targets[i],
      steps=k,
      learning_rate=0.05,
    )
    return mean_squared_error(
      model.apply(phi, batch.query_inputs[i]), batch.query_targets[i]
    )

  for i in range(batch.num_tasks):
    np.testing.assert_allclose(
      curves[i, 0],
      mean_squared_error(
        model.apply(params, batch.query_inputs[i]), batch.query_targets[i]
      ),
      rtol=1e-6,
    )
  expected = np.array(
    [[query_loss_after(k, i) for k in range(steps + 1)] for i in range(batch.num_tasks)]
  )
  np.testing.assert_allclose(curves, expected, rtol=1e-5, atol=1e-7)
  # Adaptation does something: the curve is not flat.
  assert not np.allclose(curves[:, 0], curves[:, -1])


def test_adaptation_curves_agree_across_batching(curve_setup):
  model, params, batch = curve_setup
  kwargs = dict(steps=2, learning_rate=0.05)
  ref = jmeta.adaptation_curves(
    model, mean_squared_error, params, batch, batching='vmap', **kwargs
  )
  for strategy, chunk in (('map', None), ('chunked', 2)):
    got = jmeta.adaptation_curves(
      model,
      mean_squared_error,
      params,
      batch,
      batching=strategy,
      chunk_size=chunk,
      **kwargs,
    )
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)


def test_adaptation_curves_rejects_bad_batches(curve_setup):
  model, params, batch = curve_setup
  mismatched = batch._replace(
    query_inputs=jnp.zeros(batch.query_inputs.shape[:2] + (2,))
  )
  with pytest.raises(ValueError, match='different feature shapes'):
    jmeta.adaptation_curves(
      model, mean_squared_error, params, mismatched, steps=1, learning_rate=0.1
    )
  with pytest.raises(ValueError, match='steps must be >= 0'):
    jmeta.adaptation_curves(
      model, mean_squared_error, params, batch, steps=-1, learning_rate=0.1
    )


@pytest.mark.parametrize('batching', ['vmap', 'map'])
def test_evaluate_adapted_equals_a_loop_of_adapt_and_accuracy(batching):
  n_way, tasks_n = 3, 4
  model = jmeta.mlp((8,), n_way)
  keys = jax.random.split(jax.random.key(0), 3)
  x_s = jax.random.normal(keys[0], (tasks_n, 6, 5))
  x_q = jax.random.normal(keys[1], (tasks_n, 9, 5))
  y_s = jnp.tile(jnp.arange(n_way), (tasks_n, 2))
  y_q = jnp.tile(jnp.arange(n_way), (tasks_n, 3))
  batch = jmeta.TaskBatch(x_s, y_s, x_q, y_q)
  params = model.init(keys[2], x_s[0])

  out = jmeta.evaluate_adapted(
    model,
    jmeta.losses.cross_entropy,
    params,
    batch,
    steps=2,
    learning_rate=0.5,
    metrics_fn=jmeta.losses.classification_metrics,
    batching=batching,
  )

  for i in range(tasks_n):
    phi = jmeta.adapt(
      model,
      jmeta.losses.cross_entropy,
      params,
      x_s[i],
      y_s[i],
      steps=2,
      learning_rate=0.5,
    )
    logits = np.asarray(model.apply(phi, x_q[i]))
    expected_acc = np.mean(logits.argmax(-1) == np.asarray(y_q[i]))
    np.testing.assert_allclose(out['accuracy'][i], expected_acc, rtol=1e-6)
    np.testing.assert_allclose(
      out['loss'][i], jmeta.losses.cross_entropy(logits, y_q[i]), rtol=1e-5
    )
