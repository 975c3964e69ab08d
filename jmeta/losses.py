"""Per-task losses and metrics: ``loss(outputs, targets) -> scalar``.

Every function checks the shapes of its two arguments before it computes anything
and raises ``ValueError`` on a mismatch instead of letting numpy broadcasting make a
plausible but wrong number (an ``(n,)`` target against ``(n, 1)`` outputs would give
an ``(n, n)`` difference). Shapes are static, so the check runs once at trace time
and costs nothing in a compiled step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def _check_same_shape(name: str, outputs: jax.Array, targets: jax.Array) -> None:
  out_shape, tgt_shape = jnp.shape(outputs), jnp.shape(targets)
  if out_shape == tgt_shape:
    return
  hint = ''
  if out_shape == tgt_shape + (1,):
    hint = ' Give targets a trailing axis of size 1 (targets[..., None]).'
  elif tgt_shape == out_shape + (1,):
    hint = " Drop the targets' trailing axis of size 1 (targets[..., 0])."
  raise ValueError(
    f'{name}: outputs of shape {out_shape} and targets of shape {tgt_shape} '
    'differ; they must have the same shape (broadcasting them would compute a '
    f"different, wrong loss).{hint} Make the task's targets the shape of the "
    "model's outputs, e.g. (examples, outputs)."
  )


def _check_labels_shape(name: str, logits: jax.Array, labels: jax.Array) -> None:
  logits_shape, labels_shape = jnp.shape(logits), jnp.shape(labels)
  if len(logits_shape) >= 1 and labels_shape == logits_shape[:-1]:
    return
  hint = ''
  if labels_shape == logits_shape:
    hint = (
      ' Labels must be integer class indices, not one-hot vectors (labels.argmax(-1)).'
    )
  elif len(logits_shape) >= 1 and labels_shape == logits_shape[:-1] + (1,):
    hint = " Drop the labels' trailing axis of size 1 (labels[..., 0])."
  raise ValueError(
    f'{name}: logits of shape {logits_shape} need integer labels of shape '
    f'{logits_shape[:-1]} (the logits without their class axis), got labels of '
    f'shape {labels_shape}.{hint}'
  )


def mean_squared_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean over every element of ``(outputs - targets)**2``.

  ``outputs`` and ``targets`` must have the same shape; a mismatch raises
  ``ValueError`` (at trace time) instead of broadcasting.
  """
  _check_same_shape('mean_squared_error', outputs, targets)
  return jnp.mean(jnp.square(outputs - targets))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Softmax cross-entropy with integer labels, averaged over examples.

  ``logits`` is ``(..., classes)`` and ``labels`` the integer classes of shape
  ``logits.shape[:-1]``; other shapes raise ``ValueError``.

  MAML's reference code sums over examples instead; with this mean the inner
  learning rate that gives the same step is larger by the number of examples.
  """
  _check_labels_shape('cross_entropy', logits, labels)
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of examples whose arg-max logit is the label.

  ``labels`` must have the shape ``logits.shape[:-1]``; other shapes raise
  ``ValueError``.
  """
  _check_labels_shape('accuracy', logits, labels)
  return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def classification_metrics(
  logits: jax.Array, labels: jax.Array
) -> dict[str, jax.Array]:
  """Metrics for ``metrics_fn`` of the estimators: ``{'accuracy': ...}``."""
  return {'accuracy': accuracy(logits, labels)}


def _check_gaussian_shapes(name: str, *arrays: jax.Array) -> None:
  shapes = [jnp.shape(a) for a in arrays]
  if len(set(shapes)) != 1 or len(shapes[0]) < 1:
    raise ValueError(
      f'{name}: got arrays of shapes {shapes}; they must all have one shape with a '
      'last (event) axis, e.g. (points, dims), and are not broadcast.'
    )


def gaussian_log_likelihood(
  mean: jax.Array, std: jax.Array, targets: jax.Array
) -> jax.Array:
  """log N(targets; mean, diag(std^2)) with the last axis as the event axis.

  sum_d [-log std_d - log(2 pi) / 2 - (targets_d - mean_d)^2 / (2 std_d^2)]: shape
  ``targets.shape[:-1]``, one value per observation (the decoder likelihood of
  neural processes, Garnelo et al., 2018). The three shapes must be equal.
  """
  _check_gaussian_shapes('gaussian_log_likelihood', mean, std, targets)
  z = (targets - mean) / std
  return jnp.sum(-jnp.log(std) - 0.5 * jnp.log(2 * jnp.pi) - 0.5 * z * z, axis=-1)


def diagonal_gaussian_kl(
  mean_q: jax.Array, std_q: jax.Array, mean_p: jax.Array, std_p: jax.Array
) -> jax.Array:
  """KL(N(mean_q, diag std_q^2) || N(mean_p, diag std_p^2)) over the last axis.

  sum_d [log(std_p / std_q) + (std_q^2 + (mean_q - mean_p)^2) / (2 std_p^2) - 1/2]:
  shape ``mean_q.shape[:-1]``. The four shapes must be equal.
  """
  _check_gaussian_shapes('diagonal_gaussian_kl', mean_q, std_q, mean_p, std_p)
  ratio = jnp.square(std_q / std_p)
  gap = jnp.square((mean_q - mean_p) / std_p)
  return 0.5 * jnp.sum(ratio + gap - 1.0 - jnp.log(ratio), axis=-1)


def bernoulli_log_likelihood(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """log Bernoulli(targets; sigmoid(logits)) summed over all but the leading axis.

  x log s(l) + (1 - x) log(1 - s(l)) = x l - softplus(l) per pixel, stable for any
  logit (the decoder likelihood of the neural statistician, Edwards & Storkey,
  2017). Shape ``targets.shape[:1]``; the two shapes must be equal.
  """
  _check_same_shape('bernoulli_log_likelihood', logits, targets)
  per_pixel = targets * logits - jax.nn.softplus(logits)
  return jnp.sum(per_pixel.reshape(per_pixel.shape[0], -1), axis=-1)
