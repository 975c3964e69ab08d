"""Siamese networks, against numpy references and hand-made episodes."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jmeta
from jmeta.metric import losses as mlosses
from jmeta.metric.base import metric_estimator, with_embedding_loss
from jmeta.metric.siamese import SIAMESE_LOSSES, pair_scores, siamese


def linear_embedding(dim_out):
  """A bias-free linear embedding whose outputs numpy can recompute."""

  def init(key, x):
    return {'w': jax.random.normal(key, (x.shape[-1], dim_out), x.dtype)}

  def apply(params, x, *, batch_norm=jmeta.TRANSDUCTIVE, num_support=None):
    del batch_norm, num_support
    return x @ params['w']

  return jmeta.Model(init, apply)


def identity_embedding():
  def apply(params, x, *, batch_norm=jmeta.TRANSDUCTIVE, num_support=None):
    del params, batch_norm, num_support
    return x

  return jmeta.Model(lambda key, x: {}, apply)


def test_pair_scores_and_logits_match_numpy(x64):
  rng = np.random.default_rng(0)
  sx, qx = rng.normal(size=(5, 6)), rng.normal(size=(4, 6))
  sy = np.array([2, 0, 1, 0, 2], np.int32)  # uneven shots
  learner = siamese(linear_embedding(3))
  params = learner.init(jax.random.key(0), jnp.asarray(sx))
  v, b = rng.normal(size=3), 0.3
  params['head'] = {'w': jnp.asarray(v), 'b': jnp.asarray(b)}
  w = np.asarray(params['embedding']['w'])
  es, eq = sx @ w, qx @ w
  expected = np.array([[np.sum(v * np.abs(q - s)) + b for s in es] for q in eq])
  got = pair_scores(params['head'], jnp.asarray(eq), jnp.asarray(es))
  np.testing.assert_allclose(got, expected, rtol=1e-12)
  logits = learner.logits(params, sx, sy, qx, 3)
  per_class = [expected[:, sy == k].max(axis=1) for k in range(3)]
  np.testing.assert_allclose(logits, np.stack(per_class, axis=1), rtol=1e-12)


def test_head_starts_as_a_negative_mean_l1_distance(x64):
  learner = siamese(linear_embedding(4))
  sx = np.ones((2, 3))
  params = learner.init(jax.random.key(0), jnp.asarray(sx))
  np.testing.assert_array_equal(params['head']['w'], np.full(4, -0.25))
  assert params['head']['b'] == 0.0
  assert set(
    siamese(linear_embedding(4), loss='contrastive').init(
      jax.random.key(0), jnp.asarray(sx)
    )
  ) == {'embedding'}


# Class 0 at x=0 and x=10, class 1 at 3 and 4, class 2 (one shot) off the line.
# The query at x=1.2 is nearest class 0's support at 0, although class 1's mean
# (3.5) is nearer than class 0's (5): prototypes would say class 1.
HAND_SX = np.array([[0.0, 0.0], [3.0, 0.0], [10.0, 0.0], [4.0, 0.0], [0.0, 5.0]])
HAND_SY = np.array([0, 1, 0, 1, 2], np.int32)
HAND_QX = np.array([[1.2, 0.0], [8.0, 0.0], [3.9, 0.0], [0.5, 4.0]])


@pytest.mark.parametrize('loss', SIAMESE_LOSSES)
def test_logits_pick_the_nearest_support(x64, loss):
  learner = siamese(identity_embedding(), loss=loss)
  params = learner.init(jax.random.key(0), jnp.asarray(HAND_SX))
  logits = np.asarray(learner.logits(params, HAND_SX, HAND_SY, HAND_QX, 3))
  np.testing.assert_array_equal(logits.argmax(axis=1), [0, 0, 1, 2])
  d = np.abs(HAND_QX[:, None] - HAND_SX[None])  # (queries, support, features)
  if loss == 'bce':
    score = -d.mean(axis=-1)  # the initial head: -mean_k |f(x)_k - f(x')_k|
  else:
    score = -np.sqrt(np.sum(d**2, axis=-1))
  expected = np.stack([score[:, HAND_SY == k].max(axis=1) for k in range(3)], axis=1)
  np.testing.assert_allclose(logits, expected, rtol=1e-12)


def numpy_balanced_bce(scores, same):
  bce = np.logaddexp(0.0, scores) - same * scores
  return 0.5 * bce[same].mean() + 0.5 * bce[~same].mean()


def test_bce_loss_is_class_balanced(x64):
  rng = np.random.default_rng(1)
  sx, qx = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
  sy = qy = np.repeat(np.arange(3), 2).astype(np.int32)
  learner = siamese(linear_embedding(4))
  params = learner.init(jax.random.key(2), jnp.asarray(sx))
  value, metrics = learner.loss(params, jmeta.Task(sx, sy, qx, qy), 3)
  w, h = np.asarray(params['embedding']['w']), params['head']
  es, eq = sx @ w, qx @ w
  scores = np.abs(eq[:, None] - es[None]) @ np.asarray(h['w']) + float(h['b'])
  same = qy[:, None] == sy[None]
  np.testing.assert_allclose(value, numpy_balanced_bce(scores, same), rtol=1e-12)
  logits = np.stack([scores[:, sy == k].max(1) for k in range(3)], axis=1)
  np.testing.assert_allclose(metrics['accuracy'], np.mean(logits.argmax(1) == qy))


def test_distance_losses_use_the_episode_embeddings(x64):
  rng = np.random.default_rng(3)
  sx, qx = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
  sy = qy = np.repeat(np.arange(3), 2).astype(np.int32)
  task = jmeta.Task(sx, sy, qx, qy)
  model = linear_embedding(4)
  params = siamese(model, loss='contrastive').init(jax.random.key(4), jnp.asarray(sx))
  w = np.asarray(params['embedding']['w'])
  es, eq = sx @ w, qx @ w
  d = np.sqrt(((eq[:, None] - es[None]) ** 2).sum(-1))
  same = qy[:, None] == sy[None]
  terms = np.where(same, d**2, np.maximum(0.7 - d, 0.0) ** 2)
  expected = 0.5 * terms[same].mean() + 0.5 * terms[~same].mean()
  got, _ = siamese(model, loss='contrastive', margin=0.7).loss(params, task, 3)
  np.testing.assert_allclose(got, expected, rtol=1e-12)
  both, labels = np.concatenate([es, eq]), np.concatenate([sy, qy])
  for name, fn in (
    ('triplet_batch_hard', mlosses.batch_hard_triplet_loss),
    ('triplet_semi_hard', mlosses.batch_semi_hard_triplet_loss),
  ):
    got, _ = siamese(model, loss=name, margin=0.7).loss(params, task, 3)
    np.testing.assert_allclose(got, fn(both, labels, margin=0.7), rtol=1e-12)


def random_image_batch(tasks=2, n_way=3, k_shot=2, q_query=2, size=16, seed=0):
  rng = np.random.default_rng(seed)

  def draw(shots):
    y = np.tile(np.repeat(np.arange(n_way), shots), (tasks, 1)).astype(np.int32)
    x = rng.uniform(size=(tasks, n_way * shots, size, size, 1)).astype(np.float32)
    return x, y

  sx, sy = draw(k_shot)
  qx, qy = draw(q_query)
  return jmeta.TaskBatch(sx, sy, qx, qy)


@pytest.mark.parametrize('loss', SIAMESE_LOSSES)
def test_meta_training_reduces_every_loss(loss):
  batch = random_image_batch()
  model = jmeta.conv4(0, variant='maxpool', filters=4, conv_impl='xla')
  learner = siamese(model, loss=loss, margin=1.0)
  params = learner.init(jax.random.key(0), batch.support_inputs[0])
  trainer = jmeta.make_meta_trainer(
    metric_estimator(learner, n_way=3), optax.adam(1e-2)
  )
  state = trainer.init(params)
  losses = []
  for _ in range(20):
    state, metrics = trainer.step(state, batch)
    losses.append(float(metrics['loss']))
  chex.assert_tree_all_finite(state.params)
  assert np.all(np.isfinite(losses)), losses
  assert losses[-1] < 0.8 * losses[0], losses


def test_works_as_a_base_for_an_embedding_loss(x64):
  rng = np.random.default_rng(5)
  sx, qx = rng.normal(size=(4, 5)), rng.normal(size=(2, 5))
  sy, qy = np.array([0, 0, 1, 1], np.int32), np.array([0, 1], np.int32)
  task = jmeta.Task(sx, sy, qx, qy)
  learner = siamese(linear_embedding(3))
  params = learner.init(jax.random.key(0), jnp.asarray(sx))
  combined = with_embedding_loss(
    learner, functools.partial(mlosses.center_loss, num_classes=2), 0.5
  )
  base, _ = learner.loss(params, task, 2)
  total, metrics = combined.loss(params, task, 2)
  w = np.asarray(params['embedding']['w'])
  e, y = np.concatenate([sx, qx]) @ w, np.concatenate([sy, qy])
  c = np.stack([e[y == k].mean(0) for k in y])
  np.testing.assert_allclose(
    metrics['embedding_loss'], 0.5 * np.mean(((e - c) ** 2).sum(1)), rtol=1e-12
  )
  np.testing.assert_allclose(total, base + 0.5 * metrics['embedding_loss'])


def test_support_batch_norm_keeps_each_query_independent():
  rng = np.random.default_rng(6)
  sx = rng.uniform(size=(4, 16, 16, 1)).astype(np.float32)
  qx = rng.uniform(size=(3, 16, 16, 1)).astype(np.float32)
  sy = np.array([0, 0, 1, 1], np.int32)
  changed = qx.copy()
  changed[1] = 1.0 - changed[1]
  model = jmeta.conv4(0, variant='maxpool', filters=4, conv_impl='xla')
  for loss in ('bce', 'contrastive'):
    support = siamese(model, loss=loss, batch_norm='support')
    transductive = siamese(model, loss=loss, batch_norm='transductive')
    params = support.init(jax.random.key(0), jnp.asarray(sx))
    before = np.asarray(support.logits(params, sx, sy, qx, 2))
    after = np.asarray(support.logits(params, sx, sy, changed, 2))
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[2], after[2])
    before = np.asarray(transductive.logits(params, sx, sy, qx, 2))
    after = np.asarray(transductive.logits(params, sx, sy, changed, 2))
    assert np.abs(before[0] - after[0]).max() > 1e-5


def test_bad_arguments_name_the_problem():
  model = jmeta.mlp((4,), 2)
  with pytest.raises(ValueError, match='unknown loss') as error:
    siamese(model, loss='hinge')
  for name in SIAMESE_LOSSES:
    assert name in str(error.value)
  with pytest.raises(ValueError, match='unknown batch_norm mode'):
    siamese(model, batch_norm='running')
