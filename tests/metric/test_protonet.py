"""Prototypical networks and the metric-learner plumbing, against numpy references."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jmeta
from jmeta import metric


def linear_embedding(dim_out):
  """A bias-free linear embedding whose outputs numpy can recompute."""

  def init(key, x):
    return {'w': jax.random.normal(key, (x.shape[-1], dim_out), x.dtype)}

  def apply(params, x, *, batch_norm=jmeta.TRANSDUCTIVE, num_support=None):
    del batch_norm, num_support
    return x @ params['w']

  return jmeta.Model(init, apply)


def episode(n_way=3, k_shot=2, q_query=2, dim=5, seed=0, dtype=np.float64):
  rng = np.random.default_rng(seed)
  sx = rng.normal(size=(n_way * k_shot, dim)).astype(dtype)
  qx = rng.normal(size=(n_way * q_query, dim)).astype(dtype)
  sy = np.repeat(np.arange(n_way), k_shot).astype(np.int32)
  qy = np.repeat(np.arange(n_way), q_query).astype(np.int32)
  return sx, sy, qx, qy


def numpy_prototype_logits(w, sx, sy, qx, n_way, distance):
  es, eq = sx @ w, qx @ w
  protos = np.stack([es[sy == k].mean(axis=0) for k in range(n_way)])
  if distance == 'cosine':
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    return 10.0 * unit(eq) @ unit(protos).T
  return -np.array([[np.sum((q - c) ** 2) for c in protos] for q in eq])


@pytest.mark.parametrize('distance', ['squared_euclidean', 'cosine'])
def test_logits_match_numpy(x64, distance):
  sx, sy, qx, _ = episode()
  learner = metric.prototypical(linear_embedding(4), distance=distance)
  params = learner.init(jax.random.key(0), jnp.asarray(sx))
  got = learner.logits(params, sx, sy, qx, 3)
  expected = numpy_prototype_logits(np.asarray(params['w']), sx, sy, qx, 3, distance)
  # Cosine normalises with rsqrt(|v|^2 + 1e-8), hence the looser tolerance.
  tol = 1e-8 if distance == 'cosine' else 1e-12
  np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


def test_loss_is_cross_entropy_of_the_logits(x64):
  sx, sy, qx, qy = episode(seed=3)
  learner = metric.prototypical(linear_embedding(4))
  params = learner.init(jax.random.key(1), jnp.asarray(sx))
  value, metrics = learner.loss(params, jmeta.Task(sx, sy, qx, qy), 3)
  logits = numpy_prototype_logits(
    np.asarray(params['w']), sx, sy, qx, 3, 'squared_euclidean'
  )
  log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  np.testing.assert_allclose(value, -log_p[np.arange(len(qy)), qy].mean(), rtol=1e-12)
  np.testing.assert_allclose(metrics['accuracy'], np.mean(logits.argmax(1) == qy))


def test_class_means_match_numpy(x64):
  rng = np.random.default_rng(0)
  e = rng.normal(size=(7, 2, 3))
  y = np.array([2, 0, 2, 1, 0, 2, 1])
  got = metric.class_means(jnp.asarray(e), jnp.asarray(y), 3)
  expected = np.stack([e[y == k].mean(axis=0) for k in range(3)])
  np.testing.assert_allclose(got, expected, rtol=1e-12)


def conv_episode(seed=0):
  rng = np.random.default_rng(seed)
  sx = rng.uniform(size=(4, 28, 28, 1)).astype(np.float32)
  qx = rng.uniform(size=(3, 28, 28, 1)).astype(np.float32)
  sy = np.array([0, 0, 1, 1], np.int32)
  return sx, sy, qx


def test_support_batch_norm_keeps_queries_out_of_the_support_embeddings():
  """'support' statistics: a query's logits depend on the support set and on itself
  only. 'transductive' normalises support and queries together, so changing one query
  moves the prototypes and every other query's logits."""
  sx, sy, qx = conv_episode()
  changed = qx.copy()
  changed[1] = 1.0 - changed[1]
  model = jmeta.conv4(0, variant='maxpool', filters=4, conv_impl='xla')
  params = model.init(jax.random.key(0), jnp.asarray(sx))
  support = metric.prototypical(model, batch_norm='support')
  transductive = metric.prototypical(model, batch_norm='transductive')
  for learner, leaks in ((support, False), (transductive, True)):
    before = np.asarray(learner.logits(params, sx, sy, qx, 2))
    after = np.asarray(learner.logits(params, sx, sy, changed, 2))
    emb_before, _ = learner.embed(params, sx, qx)
    emb_after, _ = learner.embed(params, sx, changed)
    if leaks:
      assert np.abs(before[0] - after[0]).max() > 1e-4
      assert np.abs(np.asarray(emb_before) - np.asarray(emb_after)).max() > 1e-4
    else:
      np.testing.assert_array_equal(before[0], after[0])
      np.testing.assert_array_equal(before[2], after[2])
      np.testing.assert_array_equal(emb_before, emb_after)
  # Support statistics are exactly the statistics of embedding the support set alone.
  alone = model.apply(params, jnp.asarray(sx), batch_norm='transductive')
  np.testing.assert_allclose(support.embed(params, sx, qx)[0], alone, atol=1e-6)


def random_batch(tasks=2, n_way=3, k_shot=2, q_query=2, dim=6, seed=0):
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(tasks, n_way, dim)).astype(np.float32)

  def draw(shots):
    y = np.tile(np.repeat(np.arange(n_way), shots), (tasks, 1)).astype(np.int32)
    x = np.take_along_axis(centers, y[..., None], axis=1)
    return x + 0.8 * rng.normal(size=x.shape).astype(np.float32), y

  sx, sy = draw(k_shot)
  qx, qy = draw(q_query)
  return jmeta.TaskBatch(sx, sy, qx, qy)


def test_meta_training_reduces_the_loss_without_retracing():
  batch = random_batch()
  base = jmeta.mlp((16,), 8)
  calls = [0]

  def apply(params, inputs, **kwargs):
    calls[0] += 1  # Python runs only while tracing
    return base.apply(params, inputs, **kwargs)

  learner = metric.prototypical(jmeta.Model(base.init, apply))
  params = learner.init(jax.random.key(0), batch.support_inputs[0])
  trainer = jmeta.make_meta_trainer(
    metric.metric_estimator(learner, n_way=3), optax.adam(1e-2)
  )
  state = trainer.init(params)
  losses = []
  for i in range(30):
    state, metrics = trainer.step(state, batch)
    losses.append(float(metrics['loss']))
    if i == 0:
      traced = calls[0]
  assert losses[-1] < 0.5 * losses[0], losses
  assert calls[0] == traced > 0, 'the step re-traced'


def test_estimator_is_the_mean_of_per_task_gradients(x64):
  batch = random_batch(tasks=3)
  batch = jax.tree.map(
    lambda x: x.astype(np.float64) if x.dtype == np.float32 else x, batch
  )
  learner = metric.prototypical(linear_embedding(4))
  params = learner.init(jax.random.key(0), batch.support_inputs[0])
  got = metric.metric_estimator(learner, n_way=3, batching='vmap').meta_gradient(
    params, batch
  )
  per_task = [
    jax.grad(lambda p, i=i: learner.loss(p, jmeta.Task(*(x[i] for x in batch)), 3)[0])(
      params
    )
    for i in range(3)
  ]
  expected = jax.tree.map(lambda *g: sum(g) / 3, *per_task)
  chex.assert_trees_all_close(got.grads, expected, rtol=1e-12)
  per_task_acc = metric.evaluate_metric(learner, params, batch, n_way=3)['accuracy']
  np.testing.assert_allclose(np.mean(per_task_acc), got.metrics['accuracy'])


def test_embedding_loss_is_added_with_its_weight(x64):
  sx, sy, qx, qy = episode()
  task = jmeta.Task(sx, sy, qx, qy)
  learner = metric.prototypical(linear_embedding(4))
  params = learner.init(jax.random.key(0), jnp.asarray(sx))

  def spread(embeddings, labels):
    return jnp.sum(embeddings**2) + jnp.sum(labels)

  combined = metric.with_embedding_loss(learner, spread, 0.25)
  base, _ = learner.loss(params, task, 3)
  total, metrics = combined.loss(params, task, 3)
  w = np.asarray(params['w'])
  extra = np.sum((sx @ w) ** 2) + np.sum((qx @ w) ** 2) + sy.sum() + qy.sum()
  np.testing.assert_allclose(metrics['embedding_loss'], extra, rtol=1e-12)
  np.testing.assert_allclose(total, base + 0.25 * extra, rtol=1e-12)


def test_bad_arguments_name_the_problem():
  model = jmeta.mlp((4,), 2)
  with pytest.raises(ValueError, match='unknown distance'):
    metric.prototypical(model, distance='manhattan')
  with pytest.raises(ValueError, match='unknown batch_norm mode'):
    metric.prototypical(model, batch_norm='running')
  learner = metric.prototypical(model)
  with pytest.raises(ValueError, match='n_way must be an int >= 2'):
    metric.metric_estimator(learner, n_way=1)
  with pytest.raises(ValueError, match='n_way must be an int >= 2'):
    metric.evaluate_metric(learner, None, random_batch(), n_way=3.0)
