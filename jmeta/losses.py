"""Per-task losses and metrics: ``loss(outputs, targets) -> scalar``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def mean_squared_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean over every element of ``(outputs - targets)**2``."""
  return jnp.mean(jnp.square(outputs - targets))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Softmax cross-entropy with integer labels, averaged over examples.

  MAML's reference code sums over examples instead; with this mean the inner
  learning rate that gives the same step is larger by the number of examples.
  """
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of examples whose arg-max logit is the label."""
  return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def classification_metrics(
  logits: jax.Array, labels: jax.Array
) -> dict[str, jax.Array]:
  """Metrics for ``metrics_fn`` of the estimators: ``{'accuracy': ...}``."""
  return {'accuracy': accuracy(logits, labels)}
