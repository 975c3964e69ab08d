"""Relation networks, against numpy references and hand-made episodes."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jmeta
from jmeta.metric.base import metric_estimator
from jmeta.metric.relation import (
  class_features,
  paired_first_conv,
  relation_encoder,
  relation_module,
  relation_network,
  relation_pairs,
  relation_scores,
)

N_WAY = 3
TINY = {'filters': 4, 'hidden': 8, 'conv_impl': 'xla'}


def episode(n_way=N_WAY, k_shot=2, q_query=2, seed=0):
  """Labels in shuffled order, so nothing relies on the support being sorted."""
  rng = np.random.default_rng(seed)
  sx = rng.uniform(size=(n_way * k_shot, 28, 28, 1)).astype(np.float32)
  qx = rng.uniform(size=(n_way * q_query, 28, 28, 1)).astype(np.float32)
  sy = rng.permutation(np.repeat(np.arange(n_way), k_shot)).astype(np.int32)
  qy = rng.permutation(np.repeat(np.arange(n_way), q_query)).astype(np.int32)
  return sx, sy, qx, qy


def test_feature_map_sizes_on_omniglot():
  """28x28 -> 7x7 encoder maps -> 7x7x2C pairs -> 3x3 -> 1x1 in the relation module."""
  sx, _, _, _ = episode()
  encoder = relation_encoder(filters=4, conv_impl='xla')
  params = encoder.init(jax.random.key(0), sx)
  assert encoder.apply(params, sx).shape == (len(sx), 7, 7, 4)
  learner = relation_network(**TINY)
  params = learner.init(jax.random.key(0), sx)
  assert params['relation']['block_0']['w'].shape == (3, 3, 8, 4)
  assert params['relation']['hidden']['w'].shape == (1 * 1 * 4, 8)
  assert params['relation']['out']['w'].shape == (8, 1)


@pytest.mark.parametrize('batch_norm', ['support', 'transductive'])
def test_scores_are_relation_scores_in_the_unit_interval(batch_norm):
  sx, sy, qx, _ = episode()
  learner = relation_network(batch_norm=batch_norm, **TINY)
  params = learner.init(jax.random.key(1), sx)
  scores = np.asarray(learner.logits(params, sx, sy, qx, N_WAY))
  assert scores.shape == (len(qx), N_WAY)
  assert np.all((scores >= 0.0) & (scores <= 1.0))
  assert np.all(np.isfinite(scores))


def test_loss_is_mse_to_one_hot_of_the_scores():
  sx, sy, qx, qy = episode(seed=1)
  learner = relation_network(**TINY)
  params = learner.init(jax.random.key(2), sx)
  scores = np.asarray(learner.logits(params, sx, sy, qx, N_WAY), np.float64)
  value, metrics = learner.loss(params, jmeta.Task(sx, sy, qx, qy), N_WAY)
  one_hot = np.eye(N_WAY)[qy]
  np.testing.assert_allclose(value, np.mean((scores - one_hot) ** 2), rtol=1e-6)
  np.testing.assert_allclose(metrics['loss'], value)
  np.testing.assert_allclose(metrics['accuracy'], np.mean(scores.argmax(1) == qy))


def test_class_features_are_sums_of_support_feature_maps():
  rng = np.random.default_rng(0)
  maps = rng.normal(size=(7, 3, 3, 2)).astype(np.float32)
  labels = np.array([2, 0, 2, 1, 0, 2, 1], np.int32)
  got = class_features(jnp.asarray(maps), jnp.asarray(labels), 3)
  expected = np.stack([maps[labels == k].sum(axis=0) for k in range(3)])
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_logits_score_concatenated_class_sum_and_query_pairs():
  """The learner's scores are g applied to concat(sum of class k's support maps,
  query map), pairs built here in numpy from the learner's own embeddings."""
  sx, sy, qx, _ = episode(k_shot=3, seed=2)
  learner = relation_network(batch_norm='transductive', **TINY)
  params = learner.init(jax.random.key(3), sx)
  support, query = (np.asarray(e) for e in learner.embed(params, sx, qx))
  classes = np.stack([support[sy == k].sum(axis=0) for k in range(N_WAY)])
  pairs = np.stack(
    [np.concatenate([classes[k], q], axis=-1) for q in query for k in range(N_WAY)]
  )
  np.testing.assert_allclose(
    relation_pairs(jnp.asarray(query), jnp.asarray(classes)), pairs
  )
  g = relation_module(**TINY)
  expected = g.apply(params['relation'], pairs, batch_norm='transductive')
  got = learner.logits(params, sx, sy, qx, N_WAY)
  np.testing.assert_allclose(
    got, np.asarray(expected).reshape(len(qx), N_WAY), rtol=1e-5, atol=1e-6
  )


def test_support_batch_norm_keeps_queries_apart():
  """'support' statistics in f and g: a query's scores depend on the support set and
  on itself only. 'transductive' lets every query into the statistics."""
  sx, sy, qx, _ = episode(seed=3)
  changed = qx.copy()
  changed[1] = 1.0 - changed[1]
  for mode, leaks in (('support', False), ('transductive', True)):
    learner = relation_network(batch_norm=mode, **TINY)
    params = learner.init(jax.random.key(4), sx)
    before = np.asarray(learner.logits(params, sx, sy, qx, N_WAY))
    after = np.asarray(learner.logits(params, sx, sy, changed, N_WAY))
    if leaks:
      assert np.abs(before[0] - after[0]).max() > 1e-4
    else:
      np.testing.assert_array_equal(before[0], after[0])
      np.testing.assert_array_equal(before[2:], after[2:])


def test_support_statistics_of_g_come_from_the_support_pairs():
  """With the support set itself as the queries, 'support' mode normalises the
  query pairs exactly as 'transductive' g normalises the support pairs alone."""
  sx, sy, _, _ = episode(seed=4)
  learner = relation_network(batch_norm='support', **TINY)
  params = learner.init(jax.random.key(5), sx)
  encoder = relation_encoder(filters=4, conv_impl='xla')
  support = encoder.apply(params['encoder'], sx, batch_norm='transductive')
  pairs = relation_pairs(support, class_features(support, sy, N_WAY))
  g = relation_module(**TINY)
  expected = g.apply(params['relation'], pairs, batch_norm='transductive')
  got = learner.logits(params, sx, sy, sx, N_WAY)
  np.testing.assert_allclose(
    got, np.asarray(expected).reshape(len(sx), N_WAY), rtol=1e-4, atol=1e-5
  )


def test_custom_encoder_sets_the_relation_input_shape():
  """A 4x4x3 feature map: pairs are 4x4x6 and g's FC sees 1x1x``filters``."""

  def init(key, x):
    return {'w': jax.random.normal(key, (x.shape[-1], 3))}

  def apply(params, x, *, batch_norm='transductive', num_support=None):
    del batch_norm, num_support
    return jax.nn.relu(x[:, ::7, ::7] @ params['w'])

  sx, sy, qx, _ = episode()
  learner = relation_network(encoder=jmeta.Model(init, apply), **TINY)
  params = learner.init(jax.random.key(6), sx)
  assert params['relation']['block_0']['w'].shape == (3, 3, 6, 4)
  assert params['relation']['hidden']['w'].shape == (4, 8)
  assert learner.logits(params, sx, sy, qx, N_WAY).shape == (len(qx), N_WAY)


def test_meta_training_reduces_the_loss():
  rng = np.random.default_rng(5)
  tasks = [episode(k_shot=1, q_query=2, seed=s) for s in rng.integers(0, 100, 2)]
  batch = jmeta.TaskBatch(*(np.stack(x) for x in zip(*tasks, strict=True)))
  learner = relation_network(**TINY)
  params = learner.init(jax.random.key(7), batch.support_inputs[0])
  trainer = jmeta.make_meta_trainer(
    metric_estimator(learner, n_way=N_WAY), optax.adam(1e-3)
  )
  state = trainer.init(params)
  losses = []
  for _ in range(8):
    state, metrics = trainer.step(state, batch)
    losses.append(float(metrics['loss']))
  assert np.all(np.isfinite(losses))
  assert losses[-1] < 0.95 * losses[0], losses


def test_bad_arguments_name_the_problem():
  for kwargs, match in (
    ({'filters': 0}, 'filters'),
    ({'filters': 2.5}, 'filters'),
    ({'hidden': 0}, 'hidden'),
    ({'hidden': True}, 'hidden'),
    ({'conv_impl': 'fft'}, 'conv_impl'),
    ({'batch_norm': 'running'}, 'batch_norm'),
    ({'encoder': 'conv4'}, 'encoder'),
  ):
    with pytest.raises(ValueError, match=match):
      relation_network(**kwargs)
  flat = jmeta.Model(lambda key, x: {}, lambda p, x, **kw: x.reshape(x.shape[0], -1))
  with pytest.raises(ValueError, match='NHWC feature maps'):
    relation_network(encoder=flat, **TINY).init(jax.random.key(0), episode()[0])
  tiny = jmeta.Model(lambda key, x: {}, lambda p, x, **kw: x[:, :3, :3])
  with pytest.raises(ValueError, match='at least 4x4'):
    relation_network(encoder=tiny, **TINY).init(jax.random.key(0), episode()[0])


@pytest.mark.parametrize('conv_impl', ['xla', 'patches'])
@pytest.mark.parametrize('batch_norm', ['transductive', 'support'])
def test_factored_first_convolution_equals_g_on_concatenated_pairs(
  x64, conv_impl, batch_norm
):
  """conv(concat(c, f); [W_c | W_f]) = conv(c; W_c) + conv(f; W_f), in float64."""
  rng = np.random.default_rng(8)
  maps = jnp.asarray(rng.normal(size=(5, 7, 7, 4)))
  classes = jnp.asarray(rng.normal(size=(3, 7, 7, 4)))
  g = relation_module(filters=4, hidden=8, conv_impl=conv_impl)
  pairs = relation_pairs(maps, classes)
  params = jax.tree.map(
    lambda x: jnp.asarray(x, jnp.float64), g.init(jax.random.key(0), pairs)
  )
  block = params['block_0']
  direct = jmeta.models.layers.conv2d(
    pairs, block['w'], block['b'], stride=1, impl=conv_impl
  )
  np.testing.assert_allclose(
    paired_first_conv(block, maps, classes, conv_impl), direct, rtol=1e-12, atol=1e-12
  )
  num_support = 2 * 3 if batch_norm == 'support' else None
  expected = g.apply(params, pairs, batch_norm=batch_norm, num_support=num_support)
  got = relation_scores(
    params,
    maps,
    classes,
    conv_impl=conv_impl,
    batch_norm=batch_norm,
    num_support=num_support,
  )
  np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
