"""Losses and metrics against numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmeta


def test_mean_squared_error_matches_numpy():
  rng = np.random.default_rng(0)
  out, tgt = rng.normal(size=(2, 5, 3))
  np.testing.assert_allclose(
    jmeta.losses.mean_squared_error(jnp.asarray(out), jnp.asarray(tgt)),
    np.mean((out - tgt) ** 2),
    rtol=1e-6,
  )


def test_cross_entropy_matches_numpy_log_softmax():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(6, 4)) * 3
  labels = rng.integers(0, 4, size=6)
  shifted = logits - logits.max(axis=1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  expected = -np.mean(log_probs[np.arange(6), labels])
  got = jmeta.losses.cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_accuracy_and_classification_metrics():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(20, 5))
  labels = rng.integers(0, 5, size=20)
  expected = np.mean(np.argmax(logits, axis=1) == labels)
  got = jmeta.losses.accuracy(jnp.asarray(logits), jnp.asarray(labels))
  np.testing.assert_allclose(got, expected)
  metrics = jmeta.losses.classification_metrics(
    jnp.asarray(logits), jnp.asarray(labels)
  )
  assert set(metrics) == {'accuracy'}
  np.testing.assert_allclose(metrics['accuracy'], expected)
  # Labels equal to the arg-max give accuracy 1.
  np.testing.assert_allclose(
    jmeta.losses.accuracy(jnp.asarray(logits), jnp.argmax(jnp.asarray(logits), axis=1)),
    1.0,
  )


# Shapes must match exactly: broadcasting (n,) targets against (n, 1) outputs gives
# an (n, n) difference and a plausible, wrong loss.


def test_mean_squared_error_refuses_targets_that_would_broadcast():
  outputs, targets = jnp.zeros((4, 1)), jnp.ones((4,))
  with pytest.raises(ValueError, match=r'\(4, 1\).*\(4,\).*targets\[\.\.\., None\]'):
    jmeta.losses.mean_squared_error(outputs, targets)
  with pytest.raises(ValueError, match=r'targets\[\.\.\., 0\]'):
    jmeta.losses.mean_squared_error(targets, outputs)
  with pytest.raises(ValueError, match=r'\(4, 2\).*\(1, 2\)'):
    jmeta.losses.mean_squared_error(jnp.zeros((4, 2)), jnp.zeros((1, 2)))


def test_mean_squared_error_checks_shapes_at_trace_time_under_jit():
  loss = jax.jit(jmeta.losses.mean_squared_error)
  with pytest.raises(ValueError, match='same shape'):
    loss(jnp.zeros((3, 1)), jnp.zeros((3,)))
  np.testing.assert_allclose(loss(jnp.zeros((3, 1)), jnp.ones((3, 1))), 1.0)


@pytest.mark.parametrize(
  'fn',
  [
    jmeta.losses.cross_entropy,
    jmeta.losses.accuracy,
    jmeta.losses.classification_metrics,
  ],
)
def test_classification_losses_refuse_labels_of_the_wrong_shape(fn):
  logits = jnp.zeros((6, 3))
  with pytest.raises(
    ValueError, match=r'\(6, 3\).*\(6,\).*\(6, 1\).*labels\[\.\.\., 0\]'
  ):
    fn(logits, jnp.zeros((6, 1), jnp.int32))
  with pytest.raises(ValueError, match='one-hot'):
    fn(logits, jnp.zeros((6, 3), jnp.int32))
  with pytest.raises(ValueError, match=r'\(5,\)'):
    fn(logits, jnp.zeros((5,), jnp.int32))
  fn(logits, jnp.zeros((6,), jnp.int32))  # the right shape passes


def test_sinusoid_targets_match_the_mlp_outputs():
  """The repository's own regression pipeline passes matching shapes."""
  tasks = jmeta.sinusoid_tasks(num_support=5, num_query=7)
  batch = tasks.sample(jax.random.key(0), 2)
  model = jmeta.mlp((8,), 1)
  params = model.init(jax.random.key(1), batch.support_inputs[0])
  outputs = model.apply(params, batch.query_inputs[0])
  assert outputs.shape == batch.query_targets[0].shape == (7, 1)
  jmeta.losses.mean_squared_error(outputs, batch.query_targets[0])


def test_gaussian_log_likelihood_matches_scipy(x64):
  from scipy import stats

  rng = np.random.default_rng(3)
  mean, targets = rng.normal(size=(2, 6, 3))
  std = rng.uniform(0.1, 2.0, size=(6, 3))
  expected = [
    stats.multivariate_normal(mean[i], np.diag(std[i] ** 2)).logpdf(targets[i])
    for i in range(6)
  ]
  got = jmeta.losses.gaussian_log_likelihood(*map(jnp.asarray, (mean, std, targets)))
  np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_diagonal_gaussian_kl_matches_the_closed_form(x64):
  """KL(q||p) = (tr(S_p^-1 S_q) + (m_p - m_q)^T S_p^-1 (m_p - m_q) - k
  + log det S_p - log det S_q) / 2, with dense matrices in numpy."""
  rng = np.random.default_rng(4)
  mq, mp = rng.normal(size=(2, 5, 4))
  sq, sp = rng.uniform(0.2, 3.0, size=(2, 5, 4))
  expected = []
  for i in range(5):
    cq, cp = np.diag(sq[i] ** 2), np.diag(sp[i] ** 2)
    inv = np.linalg.inv(cp)
    gap = mp[i] - mq[i]
    expected.append(
      0.5
      * (
        np.trace(inv @ cq)
        + gap @ inv @ gap
        - 4
        + np.linalg.slogdet(cp)[1]
        - np.linalg.slogdet(cq)[1]
      )
    )
  got = jmeta.losses.diagonal_gaussian_kl(*map(jnp.asarray, (mq, sq, mp, sp)))
  np.testing.assert_allclose(got, expected, rtol=1e-12)
  same = jmeta.losses.diagonal_gaussian_kl(*map(jnp.asarray, (mq, sq, mq, sq)))
  np.testing.assert_allclose(same, 0.0, atol=1e-15)


def test_gaussian_functions_refuse_broadcasting():
  a, b = jnp.zeros((4, 1)), jnp.ones((4,))
  with pytest.raises(ValueError, match='gaussian_log_likelihood'):
    jmeta.losses.gaussian_log_likelihood(a, jnp.ones((4, 1)), b)
  with pytest.raises(ValueError, match='diagonal_gaussian_kl'):
    jmeta.losses.diagonal_gaussian_kl(a, a + 1, b, b)
