"""Meta Networks: each piece against a hand computation, the vectorised memory read
against a loop over queries, and the meta-gradient against finite differences."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree
from random_episodes import episode

import jmeta
from jmeta import metric
from jmeta.losses import cross_entropy
from jmeta.metric.meta_networks import (
  base_logits,
  key_logits,
  keys,
  log_and_sign,
  max_pool_ceil,
  meta_networks,
)
from jmeta.tasks.batch import Task

IMPL = 'xla'


def tiny(num_classes=3, **options):
  options = {
    'filters': 8,
    'conv_layers': 2,
    'meta_hidden': 5,
    'key_chunks': 3,
  } | options
  return meta_networks(num_classes, conv_impl=IMPL, **options)


def test_log_and_sign_matches_the_reference_formula():
  g = np.array([0.0, 1e-12, -3e-4, 2.5, -5000.0], np.float32)
  eps = np.finfo(np.float32).eps
  log = np.maximum(np.log(np.abs(g) + eps) / 7.0, -1.0)
  sign = np.clip(g * np.exp(7.0), -1.0, 1.0)
  got = np.asarray(log_and_sign(jnp.asarray(g)))
  np.testing.assert_allclose(got, np.stack([log, sign], -1), rtol=1e-6)
  # Tiny gradients saturate the log at -1; log|g| / 7 above 1 is not clipped.
  assert got[1, 0] == -1.0 and got[4, 0] > 1.0


def test_max_pool_rounds_up_as_chainer_cover_all():
  x = jnp.arange(2 * 5 * 3 * 1, dtype=jnp.float32).reshape(2, 5, 3, 1)
  got = np.asarray(max_pool_ceil(x))
  assert got.shape == (2, 3, 2, 1)
  xs = np.asarray(x)
  for r in range(3):
    for c in range(2):
      want = xs[:, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2].max(axis=(1, 2))
      np.testing.assert_array_equal(got[:, r, c], want)
  sizes = [28]
  while sizes[-1] > 1:
    sizes.append(max_pool_ceil(jnp.zeros((1, sizes[-1], sizes[-1], 1))).shape[1])
  assert sizes == [28, 14, 7, 4, 2, 1]


def test_zero_fast_weights_leave_the_slow_network():
  learner = tiny()
  sx, _, qx, _ = episode()
  params = learner.init(jax.random.key(0), sx)
  slow = params['base']
  zero = jax.tree.map(lambda w: jnp.zeros((qx.shape[0], *w.shape)), slow)
  got = base_logits(slow, zero, qx, impl=IMPL, per_example=True)
  # The slow network by hand: conv, ReLU, pool (rounding up), dense, ReLU, dense.
  h = qx
  for i in range(2):
    h = jax.lax.conv_general_dilated(
      h, slow[f'conv_{i}'], (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
    )
    h = max_pool_ceil(jax.nn.relu(h))
  want = jax.nn.relu(h.reshape(h.shape[0], -1) @ slow['dense_0']) @ slow['dense_1']
  assert np.abs(want).max() > 0.1  # no dead network
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_layer_augmentation_sums_the_slow_and_fast_relus():
  learner = tiny()
  sx, _, qx, _ = episode()
  params = learner.init(jax.random.key(0), sx)
  slow = params['base']
  fast = learner.init(jax.random.key(5), sx)['base']
  got = base_logits(slow, fast, qx, impl=IMPL, per_example=False)

  def conv(h, w):
    return jax.nn.relu(
      jax.lax.conv_general_dilated(
        h, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
      )
    )

  h = qx
  for i in range(2):
    h = max_pool_ceil(conv(h, slow[f'conv_{i}']) + conv(h, fast[f'conv_{i}']))
  h = h.reshape(h.shape[0], -1)
  hidden = jax.nn.relu(h @ slow['dense_0']) + jax.nn.relu(h @ fast['dense_0'])
  want = hidden @ slow['dense_1'] + hidden @ fast['dense_1']
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def key_loss(params, x, y):
  return cross_entropy(key_logits(params, x, impl=IMPL), y)


def base_loss(params, x, y):
  return cross_entropy(base_logits(params, None, x, impl=IMPL, per_example=False), y)


def test_each_query_reads_the_memory_as_a_loop_over_queries_does():
  """The vectorised read equals, query by query: keys, cosine softmax over the
  support keys, the weighted sum of the support examples' fast weights, then the
  base network on that query alone."""
  learner = tiny()
  sx, sy, qx, _ = episode(queries=2)
  params = learner.init(jax.random.key(0), sx)
  got = jax.jit(learner.logits, static_argnums=4)(params, sx, sy, qx, 3)
  assert got.shape == (6, 3)
  assert np.abs(got).max() > 0.1 and not np.allclose(got[0], got[1])
  # The loop's pieces are jitted, each compiled once for its 3 or 6 calls: op by
  # op, their primitives' dispatch took most of this test's time.
  key_grad, base_grad = jax.jit(jax.grad(key_loss)), jax.jit(jax.grad(base_loss))

  # d: the key network's fast weights from the LSTM over the 3 chunks' gradients.
  grads = []
  for c in range(3):
    x, y = sx[c : c + 1], sy[c : c + 1]
    g = key_grad(params['key'], x, y)
    convs = {k: v for k, v in g.items() if k.startswith('conv_')}
    grads.append((convs, {'dense_0': g['dense_0']}))
  key_fast = {}
  for part, name in ((0, 'conv'), (1, 'dense')):
    cell = params['d'][name]
    flats = [ravel_pytree(g[part])[0] for g in grads]
    unravel = ravel_pytree(grads[0][part])[1]
    lstm = nn.LSTMCell(5)
    carry = lstm.initialize_carry(jax.random.key(0), (flats[0].shape[0], 2))
    for flat in flats:
      carry, h = lstm.apply({'params': cell['lstm']}, carry, log_and_sign(flat))
    out = nn.Dense(1).apply({'params': cell['out']}, h)[:, 0]
    key_fast.update(unravel(out))

  # m: one set of fast weights per support example.
  mlp = nn.Sequential([nn.Dense(5), nn.relu, nn.Dense(5), nn.relu, nn.Dense(1)])
  memory = []
  for i in range(3):
    x, y = sx[i : i + 1], sy[i : i + 1]
    g = base_grad(params['base'], x, y)
    w = {}
    for name, keys_ in (
      ('conv', ['conv_0', 'conv_1']),
      ('dense', ['dense_0', 'dense_1']),
    ):
      part = {k: g[k] for k in keys_}
      flat, unravel = ravel_pytree(part)
      z = mlp.apply({'params': params['m'][name]}, log_and_sign(flat))[:, 0]
      w.update(unravel(z))
    memory.append(w)

  key_of = jax.jit(lambda x: keys(params['key'], key_fast, x, impl=IMPL))
  one_query = jax.jit(
    lambda fast, x: base_logits(params['base'], fast, x, impl=IMPL, per_example=False)
  )
  support_keys = key_of(sx)
  for q in range(qx.shape[0]):
    r = key_of(qx[q : q + 1])[0]
    cos = [
      float(jnp.dot(r, k) / (jnp.linalg.norm(r) * jnp.linalg.norm(k)))
      for k in support_keys
    ]
    a = np.exp(cos) / np.sum(np.exp(cos))
    fast = jax.tree.map(lambda *ws, a=a: sum(ai * wi for ai, wi in zip(a, ws)), *memory)
    want = one_query(fast, qx[q : q + 1])
    np.testing.assert_allclose(got[q], want[0], rtol=2e-4, atol=1e-5)


def test_queries_do_not_see_each_other():
  learner = tiny()
  sx, sy, qx, _ = episode(queries=2)
  params = learner.init(jax.random.key(0), sx)
  base = learner.logits(params, sx, sy, qx, 3)
  perm = jnp.array([5, 0, 3, 1, 4, 2])
  np.testing.assert_allclose(
    learner.logits(params, sx, sy, qx[perm], 3), base[perm], rtol=1e-5
  )
  changed = qx.at[1].set(1.0 - qx[1])
  out = learner.logits(params, sx, sy, changed, 3)
  np.testing.assert_allclose(jnp.delete(out, 1, 0), jnp.delete(base, 1, 0), rtol=1e-5)
  assert not np.allclose(out[1], base[1])


def test_meta_gradient_matches_finite_differences_and_skips_the_fixed_key_head(x64):
  learner = tiny()
  sx, sy, qx, qy = (
    x.astype(jnp.float64) if x.dtype == jnp.float32 else x for x in episode()
  )
  params = jax.tree.map(
    lambda x: x.astype(jnp.float64), learner.init(jax.random.key(0), sx)
  )
  task = Task(sx, sy, qx, qy)
  loss = jax.jit(lambda p: learner.loss(p, task, 3)[0])
  grads = jax.jit(jax.grad(lambda p: learner.loss(p, task, 3)[0]))(params)
  # The key network's head feeds only the gradients d reads, which are inputs.
  assert not np.any(np.asarray(grads['key']['dense_1']))
  for path in (
    ('base', 'conv_1'),
    ('key', 'conv_0'),
    ('d', 'conv', 'out', 'kernel'),
    ('m', 'dense', 'layers_4', 'kernel'),
  ):
    assert np.any(np.asarray(_get(grads, path))), path
  # Central differences along a random direction in d's and m's parameters: the
  # gradients they read are inputs (stop_gradient), which a change of the networks'
  # slow weights would also move, so those are left out of the direction.
  direction = jax.tree.map(jnp.zeros_like, params)
  for name in ('d', 'm'):
    leaves, treedef = jax.tree.flatten(params[name])
    keys = jax.random.split(jax.random.key(7), len(leaves))
    direction[name] = jax.tree.unflatten(
      treedef, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]
    )
  eps = 1e-5
  plus = jax.tree.map(lambda p, d: p + eps * d, params, direction)
  minus = jax.tree.map(lambda p, d: p - eps * d, params, direction)
  fd = (float(loss(plus)) - float(loss(minus))) / (2 * eps)
  analytic = sum(
    float(jnp.vdot(g, d))
    for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction))
  )
  assert abs(analytic) > 1e-2
  np.testing.assert_allclose(analytic, fd, rtol=1e-5)


def _get(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def test_trains_through_the_metric_estimator():
  learner = tiny()
  estimator = metric.metric_estimator(learner, n_way=3, batching='vmap')
  sx, sy, qx, qy = episode(queries=3)
  batch = jmeta.TaskBatch(sx[None], sy[None], qx[None], qy[None])
  trainer = jmeta.make_meta_trainer(estimator, optax.adam(1e-2))
  state = trainer.init(learner.init(jax.random.key(0), sx))
  losses = []
  for _ in range(30):
    state, metrics = trainer.step(state, batch)
    losses.append(float(metrics['loss']))
  # From chance (ln 3 = 1.10, after a first step off a larger start) to well below.
  assert losses[-1] < 0.5 * np.log(3), losses


def test_bad_inputs_are_named():
  learner = tiny()
  sx, sy, qx, _ = episode()
  params = learner.init(jax.random.key(0), sx)
  with pytest.raises(ValueError, match='built for 3-way episodes.*num_classes=5'):
    learner.logits(params, sx, sy, qx, 5)
  with pytest.raises(ValueError, match='key_chunks=2.*3 support examples'):
    tiny(key_chunks=2).logits(params, sx, sy, qx, 3)
  with pytest.raises(ValueError, match='NHWC'):
    learner.init(jax.random.key(0), sx[..., 0])
  with pytest.raises(ValueError, match='num_classes'):
    meta_networks(0)
  with pytest.raises(ValueError, match='log_scale'):
    meta_networks(5, log_scale=0)
  with pytest.raises(ValueError, match='no label-free embedding'):
    metric.with_embedding_loss(learner, metric.center_loss, 1.0)
