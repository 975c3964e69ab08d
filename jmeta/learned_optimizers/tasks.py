"""Task families for learned optimizers: distributions over optimisation problems.

A ``TaskFamily`` is pure, seeded functions, as in learned_optimization:
``sample(key) -> task`` draws a problem (a pytree of arrays, so a batch of them
``vmap``s), ``init(task, key) -> params`` its starting point, and
``loss(task, params) -> scalar`` its objective. A stochastic problem (a network
trained on minibatches) also has ``step_loss(task, params, step) -> scalar``, the
loss the optimizer sees at inner step ``step`` (minibatch ``step``), an unbiased
estimate of ``loss``; ``loss_at_step`` picks whichever the family has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jmeta.validation import check_positive_int


class TaskFamily(NamedTuple):
  """A distribution over optimisation problems; see the module docstring."""

  name: str
  sample: Callable[[jax.Array], Any]
  init: Callable[[Any, jax.Array], Any]
  loss: Callable[[Any, Any], jax.Array]
  step_loss: Callable[[Any, Any, jax.Array], jax.Array] | None = None


def loss_at_step(family: TaskFamily, task: Any, params: Any, step: jax.Array):
  """The loss the optimizer sees at inner step ``step``: ``family.step_loss`` (e.g.
  on minibatch ``step``) when the family has one, else the deterministic ``loss``."""
  if family.step_loss is None:
    return family.loss(task, params)
  return family.step_loss(task, params, step)


class Quadratic(NamedTuple):
  """f(theta) = ||W theta - y||^2."""

  w: jax.Array
  y: jax.Array


def quadratics(dim: int = 10) -> TaskFamily:
  """Random quadratics f(theta) = ||W theta - y||^2 in ``dim`` dimensions.

  Andrychowicz et al. (2016), Sec. 3.1: W (dim x dim) and y (dim) have i.i.d.
  standard normal entries; so has the starting point theta_0 here (the paper does
  not say how it starts).
  """
  dim = check_positive_int(dim, 'dim')

  def sample(key):
    kw, ky = jax.random.split(key)
    return Quadratic(jax.random.normal(kw, (dim, dim)), jax.random.normal(ky, (dim,)))

  def init(task, key):
    del task
    return jax.random.normal(key, (dim,))

  def loss(task, params):
    return jnp.sum(jnp.square(task.w @ params - task.y))

  return TaskFamily(f'quadratic{dim}', sample, init, loss)


ACTIVATIONS = {'sigmoid': jax.nn.sigmoid, 'relu': jax.nn.relu}


class MLPClassifierTask(NamedTuple):
  """One MLP-on-images problem: ``seed`` names its stream of minibatches."""

  seed: jax.Array


def mlp_logits(params: Sequence[dict], images: jax.Array, activation: str) -> jax.Array:
  """Logits of an MLP, ``images`` (n, ...) flattened; ``activation`` between layers."""
  x = jnp.reshape(images, (images.shape[0], -1))
  for layer in params[:-1]:
    x = ACTIVATIONS[activation](x @ layer['w'] + layer['b'])
  return x @ params[-1]['w'] + params[-1]['b']


def mlp_cross_entropy(
  params: Sequence[dict], images: jax.Array, labels: jax.Array, activation: str
) -> jax.Array:
  """Mean softmax cross-entropy, -1/n sum_i log softmax(MLP(x_i))_{y_i}."""
  logits = mlp_logits(params, images, activation)
  picked = jnp.take_along_axis(
    jax.nn.log_softmax(logits), labels[:, None].astype(jnp.int32), axis=1
  )
  return -jnp.mean(picked)


def batch_indices(
  task: MLPClassifierTask, step: jax.Array, num_images: int, batch_size: int
) -> jax.Array:
  """The image indices of minibatch ``step`` of ``task``: ``batch_size`` draws,
  uniform with replacement, from key ``fold_in(key(task.seed), step)``."""
  key = jax.random.fold_in(jax.random.key(task.seed), step)
  return jax.random.randint(key, (batch_size,), 0, num_images)


def mlp_classifiers(
  images: Any,
  labels: Any,
  *,
  hidden_sizes: Sequence[int] = (20,),
  activation: str = 'sigmoid',
  batch_size: int = 128,
  num_classes: int = 10,
  init_std: float = 0.01,
) -> TaskFamily:
  """An MLP classifier trained on minibatches of ``images`` (Andrychowicz et al.,
  2016, Sec. 3.2: MNIST, one hidden layer of 20 sigmoid units, minibatches of 128).

  A task is a minibatch stream (``MLPClassifierTask``); ``init`` draws every weight
  and bias i.i.d. N(0, ``init_std``^2), as the authors' released code does (0.01);
  ``step_loss(task, params, t)`` is the cross-entropy on minibatch t
  (``batch_indices``) and ``loss`` the cross-entropy on all ``images``. Images are
  uint8 (scaled by 1/255) or floats, kept as constants of the compiled unroll.
  """
  images = np.asarray(images)
  labels = np.asarray(labels)
  if images.ndim < 2 or labels.shape != images.shape[:1]:
    raise ValueError(
      f'images must be (n, ...) and labels (n,); got {images.shape} and {labels.shape}.'
    )
  if activation not in ACTIVATIONS:
    raise ValueError(
      f'activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}.'
    )
  sizes = [check_positive_int(h, 'hidden_sizes[i]') for h in hidden_sizes]
  batch_size = check_positive_int(batch_size, 'batch_size')
  num_classes = check_positive_int(num_classes, 'num_classes')
  scale = 1 / 255 if images.dtype == np.uint8 else 1.0
  pixels = jnp.asarray(images)
  targets = jnp.asarray(labels, jnp.int32)
  widths = [int(np.prod(images.shape[1:])), *sizes, num_classes]

  def as_float(x):
    return x.astype(jnp.float32) * scale

  def sample(key):
    return MLPClassifierTask(jax.random.bits(key, (), jnp.uint32))

  def init(task, key):
    del task
    keys = jax.random.split(key, 2 * (len(widths) - 1))
    return [
      {
        'w': init_std * jax.random.normal(keys[2 * i], (fan_in, fan_out)),
        'b': init_std * jax.random.normal(keys[2 * i + 1], (fan_out,)),
      }
      for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:]))
    ]

  def loss(task, params):
    del task
    return mlp_cross_entropy(params, as_float(pixels), targets, activation)

  def step_loss(task, params, step):
    rows = batch_indices(task, step, len(labels), batch_size)
    return mlp_cross_entropy(params, as_float(pixels[rows]), targets[rows], activation)

  name = f'mlp{"x".join(map(str, sizes)) or "0"}_{activation}'
  return TaskFamily(name, sample, init, loss, step_loss)
