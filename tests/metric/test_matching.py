"""Matching networks, with and without full-context embeddings, against numpy."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jmeta
from jmeta.losses import cross_entropy
from jmeta.metric.base import metric_estimator
from jmeta.metric.matching import matching


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
  # Labels out of class order, so nothing relies on a sorted support set.
  sy = rng.permutation(np.repeat(np.arange(n_way), k_shot)).astype(np.int32)
  qy = np.repeat(np.arange(n_way), q_query).astype(np.int32)
  return sx, sy, qx, qy


def unit(v):
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def softmax(z):
  e = np.exp(z - z.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def numpy_log_probs(es, sy, eq, n_way):
  """log P(y = k | x, S) = log sum_i softmax_i(cos(e_x, e_i)) [y_i = k]."""
  a = softmax(unit(eq) @ unit(es).T)
  return np.log(np.stack([a[:, sy == k].sum(axis=1) for k in range(n_way)], 1))


def sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def numpy_lstm_step(p, c, h, x):
  """One step of flax's LSTMCell from its params, written out gate by gate."""
  p = jax.tree.map(np.asarray, p)

  def gate(name):
    return (
      x @ p[f'i{name}']['kernel'] + h @ p[f'h{name}']['kernel'] + p[f'h{name}']['bias']
    )

  i, f, g, o = (
    sigmoid(gate('i')),
    sigmoid(gate('f')),
    np.tanh(gate('g')),
    sigmoid(gate('o')),
  )
  c = f * c + i * g
  return c, o * np.tanh(c)


def numpy_fce(fce, es, eq, steps):
  """The full-context embeddings of Vinyals et al. (2016), Appendix A.2, in loops."""
  n, d = es.shape
  fwd, bwd = np.zeros((n, d)), np.zeros((n, d))
  c, h = np.zeros(d), np.zeros(d)
  for i in range(n):
    c, h = numpy_lstm_step(fce['forward'], c, h, es[i])
    fwd[i] = h
  c, h = np.zeros(d), np.zeros(d)
  for i in reversed(range(n)):
    c, h = numpy_lstm_step(fce['backward'], c, h, es[i])
    bwd[i] = h
  g = fwd + bwd + es
  f = np.zeros_like(eq)
  for q, fq in enumerate(eq):
    c, h = np.zeros(d), fq  # h^_0 = 0, so h_0 = f'(x)
    for _ in range(steps):
      r = softmax(g @ h) @ g
      c, h_hat = numpy_lstm_step(fce['attention'], c, h, np.concatenate([fq, r]))
      h = h_hat + fq
    f[q] = h
  return g, f


def test_logits_match_numpy(x64):
  sx, sy, qx, _ = episode()
  learner = matching(linear_embedding(4))
  params = learner.init(jax.random.key(0), jnp.asarray(sx))
  got = learner.logits(params, sx, sy, qx, 3)
  w = np.asarray(params['embedding']['w'])
  # cosine_similarities normalises with rsqrt(|v|^2 + 1e-8), hence the tolerance.
  np.testing.assert_allclose(got, numpy_log_probs(sx @ w, sy, qx @ w, 3), atol=1e-8)


@pytest.mark.parametrize('steps', [None, 3])
def test_full_context_logits_match_numpy(x64, steps):
  sx, sy, qx, _ = episode(seed=1)
  learner = matching(linear_embedding(4), full_context=True, processing_steps=steps)
  params = learner.init(jax.random.key(2), jnp.asarray(sx))
  assert set(params) == {'embedding', 'fce'}
  w = np.asarray(params['embedding']['w'])
  g, f = numpy_fce(params['fce'], sx @ w, qx @ w, len(sx) if steps is None else steps)
  got_g, got_f = learner.embed(params, sx, qx)
  np.testing.assert_allclose(got_g, g, rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(got_f, f, rtol=1e-10, atol=1e-12)
  got = learner.logits(params, sx, sy, qx, 3)
  np.testing.assert_allclose(got, numpy_log_probs(g, sy, f, 3), atol=1e-8)


@pytest.mark.parametrize('full_context', [False, True])
def test_probabilities_sum_to_one_and_loss_is_the_nll(x64, full_context):
  """P sums to one, so log_softmax(log P) = log P and the cross-entropy of the logits
  is the negative log-likelihood -mean_q log P(y_q | x_q, S)."""
  sx, sy, qx, qy = episode(seed=3)
  learner = matching(linear_embedding(4), full_context=full_context)
  params = learner.init(jax.random.key(1), jnp.asarray(sx))
  logits = np.asarray(learner.logits(params, sx, sy, qx, 3))
  np.testing.assert_allclose(np.exp(logits).sum(axis=1), 1.0, rtol=1e-12)
  np.testing.assert_allclose(jax.nn.log_softmax(logits), logits, atol=1e-12)
  nll = -logits[np.arange(len(qy)), qy].mean()
  np.testing.assert_allclose(cross_entropy(logits, qy), nll, rtol=1e-12)
  value, metrics = learner.loss(params, jmeta.Task(sx, sy, qx, qy), 3)
  np.testing.assert_allclose(value, nll, rtol=1e-12)
  np.testing.assert_allclose(metrics['accuracy'], np.mean(logits.argmax(1) == qy))


def test_logits_stay_finite_for_a_class_missing_from_the_support_set(x64):
  sx, sy, qx, _ = episode()
  learner = matching(linear_embedding(4))
  params = learner.init(jax.random.key(0), jnp.asarray(sx))
  logits = learner.logits(params, sx, sy, qx, 4)  # class 3 has no support example
  chex.assert_tree_all_finite(logits)
  assert np.all(np.asarray(logits)[:, 3] < -700)


def test_support_permutation_invariance_without_fce():
  """Without FCE, P is a sum over the support set, so shuffling the support examples
  with their labels leaves the logits unchanged. The FCE variant is order-dependent
  by construction: its bidirectional LSTM reads the support set as a sequence."""
  sx, sy, qx, _ = episode(dtype=np.float32)
  perm = np.random.default_rng(7).permutation(len(sx))
  for full_context, invariant in ((False, True), (True, False)):
    learner = matching(linear_embedding(4), full_context=full_context)
    params = learner.init(jax.random.key(0), jnp.asarray(sx))
    before = np.asarray(learner.logits(params, sx, sy, qx, 3))
    after = np.asarray(learner.logits(params, sx[perm], sy[perm], qx, 3))
    if invariant:
      np.testing.assert_allclose(after, before, atol=1e-6)
    else:
      assert np.abs(after - before).max() > 1e-4


def test_full_context_changes_the_logits_and_its_params_get_gradients():
  sx, sy, qx, qy = episode(dtype=np.float32, seed=5)
  plain = matching(linear_embedding(4))
  fce = matching(linear_embedding(4), full_context=True, processing_steps=2)
  params = fce.init(jax.random.key(3), jnp.asarray(sx))
  with_fce = np.asarray(fce.logits(params, sx, sy, qx, 3))
  without = np.asarray(plain.logits({'embedding': params['embedding']}, sx, sy, qx, 3))
  np.testing.assert_allclose(np.exp(with_fce).sum(axis=1), 1.0, rtol=1e-5)
  assert np.abs(with_fce - without).max() > 1e-3
  grads, _ = jax.grad(fce.loss, has_aux=True)(params, jmeta.Task(sx, sy, qx, qy), 3)
  chex.assert_tree_all_finite(grads)
  for path, g in jax.tree_util.tree_leaves_with_path(grads['fce']):
    assert np.abs(np.asarray(g)).max() > 0, jax.tree_util.keystr(path)


def conv_episode(seed=0):
  rng = np.random.default_rng(seed)
  sx = rng.uniform(size=(4, 28, 28, 1)).astype(np.float32)
  qx = rng.uniform(size=(3, 28, 28, 1)).astype(np.float32)
  sy = np.array([0, 1, 0, 1], np.int32)
  return sx, sy, qx


@pytest.mark.parametrize('full_context', [False, True])
def test_support_batch_norm_keeps_queries_apart(full_context):
  """'support' statistics (and, with FCE, one attention LSTM per query): a query's
  logits depend on the support set and on itself only. 'transductive' normalises
  support and queries together, so changing one query moves every other's logits."""
  sx, sy, qx = conv_episode()
  changed = qx.copy()
  changed[1] = 1.0 - changed[1]
  model = jmeta.conv4(0, variant='maxpool', filters=4, conv_impl='xla')
  for mode, leaks in (('support', False), ('transductive', True)):
    learner = matching(model, full_context=full_context, batch_norm=mode)
    params = learner.init(jax.random.key(0), jnp.asarray(sx))
    before = np.asarray(learner.logits(params, sx, sy, qx, 2))
    after = np.asarray(learner.logits(params, sx, sy, changed, 2))
    if leaks:
      assert np.abs(before[0] - after[0]).max() > 1e-6
    else:
      np.testing.assert_array_equal(before[0], after[0])
      np.testing.assert_array_equal(before[2], after[2])
      assert np.abs(before[1] - after[1]).max() > 0


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


@pytest.mark.parametrize('full_context', [False, True])
def test_meta_training_reduces_the_loss(full_context):
  batch = random_batch()
  learner = matching(jmeta.mlp((16,), 8), full_context=full_context)
  params = learner.init(jax.random.key(0), batch.support_inputs[0])
  trainer = jmeta.make_meta_trainer(
    metric_estimator(learner, n_way=3), optax.adam(1e-2)
  )
  state = trainer.init(params)
  losses = []
  for _ in range(20):
    state, metrics = trainer.step(state, batch)
    losses.append(float(metrics['loss']))
  # Softmax over plain cosines bounds P below one, so the NLL cannot approach zero.
  assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize('full_context', [False, True])
def test_jitted_logits_do_not_retrace(full_context):
  chex.clear_trace_counter()
  learner = matching(linear_embedding(4), full_context=full_context)
  sx, sy, qx, _ = episode(dtype=np.float32)
  params = learner.init(jax.random.key(0), jnp.asarray(sx))
  logits = jax.jit(chex.assert_max_traces(learner.logits, n=1), static_argnums=4)
  first = logits(params, sx, sy, qx, 3)
  sx2, sy2, qx2, _ = episode(dtype=np.float32, seed=9)
  params2 = jax.tree.map(lambda p: 2.0 * p, params)
  second = logits(params2, sx2, sy2, qx2, 3)
  assert np.abs(np.asarray(first) - np.asarray(second)).max() > 0


@pytest.mark.parametrize(
  'kwargs, match',
  [
    ({'processing_steps': 0, 'full_context': True}, 'processing_steps'),
    ({'processing_steps': 2.0, 'full_context': True}, 'processing_steps'),
    ({'processing_steps': True, 'full_context': True}, 'processing_steps'),
    ({'processing_steps': 3}, 'full_context=True'),
    ({'full_context': 1}, 'full_context'),
    ({'batch_norm': 'batch'}, 'batch_norm'),
  ],
)
def test_invalid_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    matching(linear_embedding(2), **kwargs)
  with pytest.raises(ValueError, match='jmeta.Model'):
    matching(object())
