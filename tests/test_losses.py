"""Losses and metrics against numpy references."""

import jax.numpy as jnp
import numpy as np

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
