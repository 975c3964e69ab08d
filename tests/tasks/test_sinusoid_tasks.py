"""Sinusoid tasks: ranges, the target function, and sampling as a pure function of a key."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmeta

FAMILY = jmeta.sinusoid_tasks(5, 10)


def test_shapes_and_ranges():
  batch = FAMILY.sample(jax.random.key(0), 64)
  assert batch.support_inputs.shape == batch.support_targets.shape == (64, 5, 1)
  assert batch.query_inputs.shape == batch.query_targets.shape == (64, 10, 1)
  jmeta.validate_task_batch(batch)
  for x in (batch.support_inputs, batch.query_inputs):
    assert np.all((x >= -5.0) & (x <= 5.0))
  params = FAMILY.sample_params(jax.random.key(1), 256)
  assert np.all((params.amplitude >= 0.1) & (params.amplitude <= 5.0))
  assert np.all((params.phase >= 0.0) & (params.phase <= math.pi))
  # The ranges are filled, not just respected.
  assert np.ptp(params.amplitude) > 4.0 and np.ptp(params.phase) > 2.5


def test_targets_are_a_sin_x_minus_b_with_the_sampled_params():
  key = jax.random.key(2)
  batch = FAMILY.sample(key, 8)
  kp, _ = jax.random.split(key)
  params = FAMILY.sample_params(kp, 8)
  a = np.asarray(params.amplitude, np.float64)[:, None, None]
  b = np.asarray(params.phase, np.float64)[:, None, None]
  for x, y in (
    (batch.support_inputs, batch.support_targets),
    (batch.query_inputs, batch.query_targets),
  ):
    np.testing.assert_allclose(
      y, a * np.sin(np.asarray(x, np.float64) - b), rtol=1e-5, atol=1e-5
    )


def test_tasks_from_params_uses_the_given_params():
  params = jmeta.tasks.SinusoidParams(jnp.array([1.0, 2.0]), jnp.array([0.0, 0.5]))
  batch = FAMILY.tasks_from_params(jax.random.key(3), params)
  x = np.asarray(batch.query_inputs)
  expected = np.array([1.0, 2.0])[:, None, None] * np.sin(
    x - np.array([0.0, 0.5])[:, None, None]
  )
  np.testing.assert_allclose(batch.query_targets, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    jmeta.tasks.sinusoid_function(params, batch.query_inputs),
    batch.query_targets,
    rtol=1e-6,
  )


def test_sampling_is_a_pure_function_of_the_key():
  a = FAMILY.sample(jax.random.key(4), 6)
  b = FAMILY.sample(jax.random.key(4), 6)
  c = FAMILY.sample(jax.random.key(5), 6)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  for x, z in zip(a, c):
    assert not np.array_equal(x, z)
  # Also under jit, and inside a jit against outside.
  d = jax.jit(FAMILY.sample, static_argnums=1)(jax.random.key(4), 6)
  for x, y in zip(a, d):
    np.testing.assert_array_equal(x, y)


def test_custom_ranges_and_dtype(x64):
  family = jmeta.sinusoid_tasks(
    2, 3, amplitude=(1.0, 1.0), phase=(0.5, 0.5), x_range=(0.0, 1.0), dtype=jnp.float64
  )
  batch = family.sample(jax.random.key(6), 4)
  assert batch.query_inputs.dtype == jnp.float64
  assert np.all((batch.query_inputs >= 0.0) & (batch.query_inputs <= 1.0))
  np.testing.assert_allclose(
    batch.query_targets, np.sin(batch.query_inputs - 0.5), rtol=1e-12
  )


@pytest.mark.parametrize(
  'kwargs, match',
  [
    (dict(num_support=0), 'num_support must be a positive int'),
    (dict(num_query=2.0), 'num_query must be a positive int'),
    (dict(amplitude=(5.0, 0.1)), 'amplitude range must have low <= high'),
    (dict(x_range=(1.0, -1.0)), 'x_range range must have low <= high'),
  ],
)
def test_bad_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    jmeta.sinusoid_tasks(**kwargs)
