"""jmeta.mlp: parameter shapes, forward pass against numpy, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmeta


def numpy_forward(params, x, activation):
  n = len(params)
  for i in range(n):
    x = x @ np.asarray(params[f'layer_{i}']['w']) + np.asarray(
      params[f'layer_{i}']['b']
    )
    if i < n - 1:
      x = activation(x)
  return x


def test_init_shapes_dtypes_and_glorot_range():
  model = jmeta.mlp((5, 7), 2)
  params = model.init(jax.random.key(0), jnp.zeros((3, 4)))
  assert set(params) == {'layer_0', 'layer_1', 'layer_2'}
  fans = [(4, 5), (5, 7), (7, 2)]
  for i, (fan_in, fan_out) in enumerate(fans):
    layer = params[f'layer_{i}']
    chex.assert_shape(layer['w'], (fan_in, fan_out))
    chex.assert_shape(layer['b'], (fan_out,))
    assert layer['w'].dtype == layer['b'].dtype == jnp.float32
    np.testing.assert_array_equal(layer['b'], 0.0)
    limit = np.sqrt(6 / (fan_in + fan_out))
    assert np.all(np.abs(layer['w']) <= limit)
    assert np.std(layer['w']) > 0.1 * limit


def test_init_is_a_function_of_the_key():
  model = jmeta.mlp((6,), 1)
  x = jnp.zeros((2, 3))
  a, b = model.init(jax.random.key(0), x), model.init(jax.random.key(0), x)
  c = model.init(jax.random.key(1), x)
  chex.assert_trees_all_equal(a, b)
  assert not np.array_equal(a['layer_0']['w'], c['layer_0']['w'])


@pytest.mark.parametrize(
  'activation, np_activation',
  [(jax.nn.relu, lambda x: np.maximum(x, 0)), (jnp.tanh, np.tanh)],
  ids=['relu', 'tanh'],
)
def test_apply_matches_numpy(activation, np_activation):
  model = jmeta.mlp((5, 7), 2, activation=activation)
  params = model.init(jax.random.key(2), jnp.zeros((1, 4)))
  # Non-zero biases, so that a wrongly placed bias would show.
  params = jax.tree.map(lambda p: p + 0.1 * jnp.arange(p.size).reshape(p.shape), params)
  x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
  out = model.apply(params, jnp.asarray(x))
  chex.assert_shape(out, (3, 2))
  np.testing.assert_allclose(
    out, numpy_forward(params, x, np_activation), rtol=1e-5, atol=1e-6
  )


def test_apply_maps_over_extra_leading_axes():
  model = jmeta.mlp((5,), 2)
  params = model.init(jax.random.key(3), jnp.zeros((1, 4)))
  x = jax.random.normal(jax.random.key(4), (2, 3, 4))
  out = model.apply(params, x)
  chex.assert_shape(out, (2, 3, 2))
  chex.assert_trees_all_close(out[1], model.apply(params, x[1]), rtol=1e-6)


def test_linear_model_without_hidden_layers():
  model = jmeta.mlp((), 3)
  params = model.init(jax.random.key(5), jnp.zeros((1, 2)))
  assert set(params) == {'layer_0'}
  x = jnp.ones((4, 2))
  chex.assert_trees_all_close(
    model.apply(params, x), x @ params['layer_0']['w'] + params['layer_0']['b']
  )


def test_bad_sizes_and_batch_norm_mode_raise():
  with pytest.raises(ValueError, match='layer sizes must be positive'):
    jmeta.mlp((4, 0), 1)
  with pytest.raises(ValueError, match='layer sizes must be positive'):
    jmeta.mlp((4,), 0)
  model = jmeta.mlp((4,), 1)
  params = model.init(jax.random.key(0), jnp.zeros((1, 2)))
  with pytest.raises(ValueError, match="unknown batch_norm mode 'running'"):
    model.apply(params, jnp.zeros((1, 2)), batch_norm='running')
