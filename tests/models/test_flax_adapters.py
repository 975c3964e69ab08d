"""Flax Linen and NNX modules plug into jmeta unchanged through the adapters."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx

import jmeta
from jmeta.losses import mean_squared_error

BN_EPS = 1e-5  # the default epsilon of both Flax batch norms


class LinenMLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(8)(x))
    return nn.Dense(1)(x)


class LinenBatchNormMLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.Dense(8)(x)
    x = nn.BatchNorm(use_running_average=False)(x)
    return nn.Dense(1)(jnp.tanh(x))


class NNXBatchNormMLP(nnx.Module):
  def __init__(self, rngs):
    self.lin1 = nnx.Linear(1, 8, rngs=rngs)
    self.bn = nnx.BatchNorm(8, use_running_average=False, rngs=rngs)
    self.lin2 = nnx.Linear(8, 1, rngs=rngs)

  def __call__(self, x):
    return self.lin2(jnp.tanh(self.bn(self.lin1(x))))


def hand_batch_norm_mlp(names):
  """The same math as the Flax modules above, written as a pure function."""
  d1, bn, d2 = names

  def apply(params, x, *, batch_norm=jmeta.TRANSDUCTIVE):
    del batch_norm
    h = x @ params[d1]['kernel'] + params[d1]['bias']
    mean = jnp.mean(h, axis=0)
    var = jnp.mean(jnp.square(h - mean), axis=0)
    h = (h - mean) / jnp.sqrt(var + BN_EPS) * params[bn]['scale'] + params[bn]['bias']
    return jnp.tanh(h) @ params[d2]['kernel'] + params[d2]['bias']

  return jmeta.Model(lambda key, x: None, apply)


def sinusoid_batch(dtype=jnp.float32):
  return jmeta.sinusoid_tasks(5, 6, dtype=dtype).sample(jax.random.key(0), 3)


def maml_gradient(model, params, batch):
  est = jmeta.maml(
    model, mean_squared_error, inner_steps=2, inner_learning_rate=0.1, batching='vmap'
  )
  return jax.jit(est.meta_gradient)(params, batch)


def perturb(params, key):
  """Non-trivial scale/bias (Flax initialises them to 1 and 0)."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(
    treedef,
    [p + 0.3 * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)],
  )


@pytest.mark.parametrize('mutable', [(), ('batch_stats',)])
def test_linen_dense_mlp_equals_jmeta_mlp_with_copied_weights(x64, mutable):
  batch = sinusoid_batch(jnp.float64)
  linen_model = jmeta.from_linen(LinenMLP(), mutable=mutable)
  params = linen_model.init(jax.random.key(1), batch.support_inputs[0])
  params = jax.tree.map(
    lambda p: p.astype(jnp.float64), perturb(params, jax.random.key(2))
  )
  copied = {
    f'layer_{i}': {
      'w': params[f'Dense_{i}']['kernel'],
      'b': params[f'Dense_{i}']['bias'],
    }
    for i in range(2)
  }
  ours = jmeta.mlp((8,), 1)
  x = batch.query_inputs[0]
  chex.assert_trees_all_close(
    linen_model.apply(params, x), ours.apply(copied, x), rtol=1e-12
  )
  got = maml_gradient(linen_model, params, batch)
  ref = maml_gradient(ours, copied, batch)
  chex.assert_trees_all_close(got.metrics, ref.metrics, rtol=1e-10)
  for i in range(2):
    chex.assert_trees_all_close(
      (got.grads[f'Dense_{i}']['kernel'], got.grads[f'Dense_{i}']['bias']),
      (ref.grads[f'layer_{i}']['w'], ref.grads[f'layer_{i}']['b']),
      rtol=1e-10,
      atol=1e-14,
    )


def check_against_hand_written(model, params, names, batch):
  hand = hand_batch_norm_mlp(names)
  x = batch.query_inputs[1]
  out = model.apply(params, x)
  chex.assert_trees_all_close(out, hand.apply(params, x), rtol=1e-10)
  # Calling again gives the same result: no hidden batch-statistics state leaks in.
  chex.assert_trees_all_equal(model.apply(params, x), out)
  got = maml_gradient(model, params, batch)
  ref = maml_gradient(hand, params, batch)
  chex.assert_tree_all_finite(got.grads)
  chex.assert_trees_all_close(got, ref, rtol=1e-8, atol=1e-12)
  assert np.max(np.abs(got.grads[names[1]]['scale'])) > 1e-6


def test_linen_batch_norm_module_in_maml_matches_hand_written(x64):
  batch = sinusoid_batch(jnp.float64)
  model = jmeta.from_linen(LinenBatchNormMLP())
  params = model.init(jax.random.key(3), batch.support_inputs[0])
  assert set(params) == {'Dense_0', 'BatchNorm_0', 'Dense_1'}
  params = jax.tree.map(
    lambda p: p.astype(jnp.float64), perturb(params, jax.random.key(4))
  )
  check_against_hand_written(
    model, params, ('Dense_0', 'BatchNorm_0', 'Dense_1'), batch
  )


def test_nnx_batch_norm_module_in_maml_matches_hand_written(x64):
  batch = sinusoid_batch(jnp.float64)
  model = jmeta.from_nnx(NNXBatchNormMLP)
  params = model.init(jax.random.key(5), batch.support_inputs[0])
  assert isinstance(params, dict) and set(params) == {'lin1', 'bn', 'lin2'}
  assert all(isinstance(p, jax.Array) for p in jax.tree.leaves(params))
  chex.assert_shape(params['lin1']['kernel'], (1, 8))
  params = jax.tree.map(
    lambda p: p.astype(jnp.float64), perturb(params, jax.random.key(6))
  )
  check_against_hand_written(model, params, ('lin1', 'bn', 'lin2'), batch)


def test_adapter_init_is_a_function_of_the_key():
  x = jnp.zeros((2, 1))
  for model in (jmeta.from_linen(LinenMLP()), jmeta.from_nnx(NNXBatchNormMLP)):
    a, b = model.init(jax.random.key(0), x), model.init(jax.random.key(0), x)
    c = model.init(jax.random.key(1), x)
    chex.assert_trees_all_equal(a, b)
    assert not all(
      np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(c))
    )


def test_nnx_model_trains_in_a_jitted_meta_trainer():
  model = jmeta.from_nnx(NNXBatchNormMLP)
  tasks = jmeta.sinusoid_tasks(5, 6)
  est = jmeta.maml(model, mean_squared_error, inner_steps=1, inner_learning_rate=0.1)
  trainer = jmeta.make_meta_trainer(
    est, optax.sgd(0.01), sample_tasks=lambda k: tasks.sample(k, 2)
  )
  params = model.init(jax.random.key(0), jnp.zeros((1, 1)))
  state = trainer.init(params)
  for key in jax.random.split(jax.random.key(1), 2):
    state, metrics = trainer.step(state, key)
  jmeta.raise_if_nonfinite(state)
  assert np.isfinite(metrics['loss'])
  # (lin1's kernel barely moves: the batch norm after it makes it scale-invariant.)
  assert not np.array_equal(state.params['lin2']['kernel'], params['lin2']['kernel'])


def test_adapters_reject_unknown_batch_norm_mode():
  x = jnp.zeros((2, 1))
  for model in (jmeta.from_linen(LinenMLP()), jmeta.from_nnx(NNXBatchNormMLP)):
    params = model.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match='unknown batch_norm mode'):
      model.apply(params, x, batch_norm='running_average')
    with pytest.raises(ValueError, match="batch_norm='transductive'"):
      model.apply(params, x, batch_norm='support', num_support=1)
