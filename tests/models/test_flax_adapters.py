"""Flax Linen and NNX modules plug into jmeta unchanged through the adapters."""

import functools

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
  trainer = jmeta.with_task_sampling(
    jmeta.make_meta_trainer(est, optax.sgd(0.01)), lambda k: tasks.sample(k, 2)
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
    with pytest.raises(ValueError, match='num_support in'):
      model.apply(params, x, batch_norm='support')


# --- Issue 23: what a Flax user expects, or an error that names the fix. ---------


def hand_support_batch_norm_mlp(names, num_support):
  """``hand_batch_norm_mlp`` with the statistics of the first ``num_support`` rows."""
  d1, bn, d2 = names

  def apply(params, x):
    h = x @ params[d1]['kernel'] + params[d1]['bias']
    s = h[:num_support]
    mean = jnp.mean(s, axis=0)
    var = jnp.mean(jnp.square(s - mean), axis=0)
    h = (h - mean) / jnp.sqrt(var + BN_EPS) * params[bn]['scale'] + params[bn]['bias']
    return jnp.tanh(h) @ params[d2]['kernel'] + params[d2]['bias']

  return apply


@pytest.mark.parametrize('framework', ['linen', 'nnx'])
def test_support_batch_norm_mode_matches_hand_written(x64, framework):
  if framework == 'linen':
    model, names = (
      jmeta.from_linen(LinenBatchNormMLP()),
      ('Dense_0', 'BatchNorm_0', 'Dense_1'),
    )
  else:
    model, names = jmeta.from_nnx(NNXBatchNormMLP), ('lin1', 'bn', 'lin2')
  x = jax.random.normal(jax.random.key(7), (9, 1), jnp.float64)
  params = model.init(jax.random.key(8), x)
  params = jax.tree.map(
    lambda p: p.astype(jnp.float64), perturb(params, jax.random.key(9))
  )
  hand = hand_support_batch_norm_mlp(names, num_support=4)
  apply = functools.partial(model.apply, batch_norm='support', num_support=4)
  chex.assert_trees_all_close(apply(params, x), hand(params, x), rtol=1e-10)
  # The gradient flows through the support statistics as in the hand-written net.
  chex.assert_trees_all_close(
    jax.grad(lambda p: jnp.sum(jnp.sin(apply(p, x))))(params),
    jax.grad(lambda p: jnp.sum(jnp.sin(hand(p, x))))(params),
    rtol=1e-8,
    atol=1e-12,
  )
  # A query's output depends on the support set and itself only.
  moved = x.at[6].add(3.0)
  out, out_moved = apply(params, x), apply(params, moved)
  chex.assert_trees_all_equal(np.delete(out, 6, 0), np.delete(out_moved, 6, 0))
  assert not np.allclose(out[6], out_moved[6])
  transductive = model.apply(params, moved)
  assert not np.allclose(np.delete(out, 6, 0), np.delete(transductive, 6, 0))


class LinenConvBN(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.Conv(4, (3, 3))(x[..., None])
    x = nn.relu(nn.BatchNorm(use_running_average=False)(x))
    return x.reshape(x.shape[0], -1)


def test_flax_embedding_in_a_metric_learner_with_its_default_support_mode():
  from jmeta import metric

  model = jmeta.from_linen(LinenConvBN())
  learner = metric.prototypical(model)  # batch_norm='support' by default
  rng = np.random.default_rng(0)
  support = jnp.asarray(rng.normal(size=(6, 5, 5)), jnp.float32)
  labels = jnp.asarray([0, 1, 2, 0, 1, 2])
  query = jnp.asarray(rng.normal(size=(4, 5, 5)), jnp.float32)
  params = learner.init(jax.random.key(0), support)
  logits = learner.logits(params, support, labels, query, 3)
  chex.assert_shape(logits, (4, 3))
  moved = learner.logits(params, support, labels, query.at[0].add(2.0), 3)
  chex.assert_trees_all_equal(logits[1:], moved[1:])


class NNXCustomBatchNorm(nnx.BatchNorm):
  pass


class NNXCustomBatchNormMLP(nnx.Module):
  def __init__(self, rngs):
    self.lin = nnx.Linear(1, 4, rngs=rngs)
    self.bn = NNXCustomBatchNorm(4, use_running_average=False, rngs=rngs)

  def __call__(self, x):
    return self.bn(self.lin(x))


def test_support_mode_it_cannot_honour_names_the_fix():
  model = jmeta.from_nnx(NNXCustomBatchNormMLP)
  x = jnp.ones((4, 1))
  params = model.init(jax.random.key(0), x)
  model.apply(params, x)  # transductive works
  with pytest.raises(ValueError, match="batch_norm='transductive' to the learner"):
    model.apply(params, x, batch_norm='support', num_support=2)


class LinenRunningAverage(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.BatchNorm(use_running_average=True)(nn.Dense(2)(x))


class LinenTrainFlag(nn.Module):
  """The usual Flax pattern: the call argument ``train`` selects the behaviour."""

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Dense(16)(x)
    x = nn.BatchNorm(use_running_average=not train)(x)
    return nn.Dropout(0.5, deterministic=not train)(x)


class NNXCallRunningAverage(nnx.Module):
  def __init__(self, rngs):
    self.bn = nnx.BatchNorm(1, use_running_average=False, rngs=rngs)

  def __call__(self, x):
    return self.bn(x, use_running_average=True)


def test_running_average_batch_norm_is_refused():
  x = jnp.ones((3, 1))
  with pytest.raises(ValueError, match='use_running_average=False'):
    jmeta.from_linen(LinenRunningAverage()).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match=r'from_linen\(module, train=True\)'):
    jmeta.from_linen(LinenTrainFlag(), train=False).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match='use_running_average=False'):
    jmeta.from_nnx(lambda rngs: nnx.BatchNorm(1, use_running_average=True, rngs=rngs))
  model = jmeta.from_nnx(NNXCallRunningAverage)
  with pytest.raises(ValueError, match='batch statistics only'):
    model.apply(model.init(jax.random.key(0), x), x)


class NNXDropout(nnx.Module):
  def __init__(self, rngs):
    self.lin = nnx.Linear(3, 64, rngs=rngs)
    self.drop = nnx.Dropout(0.5, rngs=rngs)

  def __call__(self, x):
    return self.drop(jnp.exp(self.lin(x)))  # > 0, so a zero is a dropped unit


def dropped(out):
  return np.asarray(out) == 0


@pytest.mark.parametrize('framework', ['linen', 'nnx'])
def test_dropout_draws_a_fresh_mask_per_call(framework):
  if framework == 'nnx':
    model = jmeta.from_nnx(NNXDropout)
    x = jax.random.normal(jax.random.key(1), (2, 3))
  else:
    model = jmeta.from_linen(LinenTrainFlag(), train=True)
    x = jax.random.normal(jax.random.key(1), (2, 1))
  params = model.init(jax.random.key(0), x)
  apply = jax.jit(model.apply)
  out = apply(params, x)
  assert 0 < dropped(out).mean() < 1
  # New inputs, new params or an explicit key: a new mask.
  assert not np.array_equal(dropped(out), dropped(apply(params, x + 1.0)))
  moved = jax.tree.map(lambda p: p + 1e-3, params)
  assert not np.array_equal(dropped(out), dropped(apply(moved, x)))
  a = apply(params, x, key=jax.random.key(5))
  assert not np.array_equal(
    dropped(a), dropped(apply(params, x, key=jax.random.key(6)))
  )
  # The same call again (as in the forward pass jax.grad differentiates): the same.
  chex.assert_trees_all_equal(apply(params, x), out)
  chex.assert_trees_all_equal(apply(params, x, key=jax.random.key(5)), a)
  chex.assert_tree_all_finite(jax.grad(lambda p: jnp.sum(model.apply(p, x)))(params))


def test_dropout_differs_between_inner_loop_steps():
  model = jmeta.from_nnx(NNXDropout)
  x = jax.random.normal(jax.random.key(1), (2, 3))
  params = model.init(jax.random.key(0), x)

  def step(p, _):
    out = model.apply(p, x)
    g = jax.grad(lambda q: jnp.mean(model.apply(q, x)))(p)
    return jax.tree.map(lambda a, b: a - 0.1 * b, p, g), out == 0

  _, masks = jax.lax.scan(step, params, None, length=3)
  assert not np.array_equal(masks[0], masks[1])
  assert not np.array_equal(masks[1], masks[2])


def test_linen_call_arguments_are_given_to_the_adapter():
  x = jnp.ones((4, 1))
  with pytest.raises(TypeError, match=r"needs \['train'\].*train=True"):
    jmeta.from_linen(LinenTrainFlag())
  with pytest.raises(TypeError, match=r"no argument\(s\) \['trian'\]"):
    jmeta.from_linen(LinenTrainFlag(), trian=True)
  model = jmeta.from_linen(LinenTrainFlag(), train=True)
  params = model.init(jax.random.key(0), x)
  assert set(params) == {'Dense_0', 'BatchNorm_0'}
  chex.assert_shape(model.apply(params, x), (4, 16))
  evaluation = jmeta.from_linen(LinenMLP())
  chex.assert_shape(evaluation.apply(evaluation.init(jax.random.key(0), x), x), (4, 1))


def test_class_where_an_instance_is_expected_and_back_names_the_fix():
  with pytest.raises(TypeError, match=r'from_linen\(LinenMLP\(\.\.\.\)\)'):
    jmeta.from_linen(LinenMLP)
  with pytest.raises(
    TypeError, match=r'lambda rngs: NNXBatchNormMLP\(\.\.\., rngs=rngs\)'
  ):
    jmeta.from_nnx(NNXBatchNormMLP(nnx.Rngs(0)))
  with pytest.raises(TypeError, match=r'lambda rngs: Linear\(\.\.\., rngs=rngs\)'):
    jmeta.from_nnx(nnx.Linear)
  with pytest.raises(TypeError, match='use jmeta.from_linen'):
    jmeta.from_nnx(LinenMLP())
  with pytest.raises(TypeError, match='use jmeta.from_nnx'):
    jmeta.from_linen(NNXBatchNormMLP(nnx.Rngs(0)))
  with pytest.raises(TypeError, match='use jmeta.from_nnx'):
    jmeta.from_linen(NNXBatchNormMLP)
