"""The neural statistician (Edwards & Storkey, 2017) as a NamedTuple of pure functions.

A dataset D = {x_1..x_n} (here: n drawings of one Omniglot character) has a
context c; each image x_i has latents z_i = (z_i1..z_iL) in a hierarchy:

  p(c) = N(0, I),  p(z_i1 | c),  p(z_il | z_i,l-1, c),  p(x_i | z_i1..z_iL, c),

with Bernoulli pixels. Inference: q(c | D) from the statistic network (the mean over
the set of per-image embeddings of a shared encoder's features h_i, then an MLP),
and q(z_il | z_i,l-1, x_i, c). The lower bound of one dataset is

  L_D = sum_i E_q[log p(x_i | z_i, c)] - sum_i sum_l E_q KL(q(z_il | .) || p(z_il | .))
        - KL(q(c | D) || p(c)),

estimated with one reparameterised draw of c and of each z (the KLs between
Gaussians are then exact given the draws of the layers above). Training
minimises the reweighted bound of the reference implementation,
-[(1 + alpha) R - (KL_z + KL_c) / (1 + alpha)] / n, with alpha annealed from 1
towards 0 (``weighted_loss``): early on the reconstruction counts double and the
KLs half, which keeps the model from ignoring c.

Few-shot classification (as in the paper's Omniglot experiment): for each class k,
q(c | S_k) of its support images; a query x goes to the k minimising
KL(q(c | {x}) || q(c | S_k)).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jmeta.losses import bernoulli_log_likelihood, diagonal_gaussian_kl
from jmeta.models.base import Params, PRNGKey
from jmeta.neural_statistician.networks import (
  ConvEncoder,
  GaussianHead,
  ObservationDecoder,
  PrePool,
)
from jmeta.validation import check_positive_int, check_positive_real


class Gaussian(NamedTuple):
  """A diagonal Gaussian: ``mean`` and ``std`` of one shape, the last axis the event."""

  mean: jax.Array
  std: jax.Array


class ElboTerms(NamedTuple):
  """The terms of one dataset's lower bound, each summed over its images (and the
  z layers): ``elbo = reconstruction - kl_z - kl_c``."""

  reconstruction: jax.Array
  kl_z: jax.Array
  kl_c: jax.Array


class NeuralStatistician(NamedTuple):
  """The model's pure functions of a params pytree (a nested dict).

  One dataset is ``(n, height, width, 1)`` images in [0, 1]; ``vmap`` for batches.

  Attributes:
    init: ``init(key, example_images) -> params``.
    context: ``context(params, images) -> Gaussian``: q(c | D) of one set.
    class_contexts: ``(params, images, labels, num_classes) -> Gaussian`` with a
      leading class axis: q(c | images of class k) for every k, pooled by label.
    elbo_terms: ``(params, images, key) -> ElboTerms`` of one set.
    loss: ``(params, sets, key, alpha) -> (scalar, metrics)`` over a batch of
      sets ``(batch, n, height, width, 1)``: ``weighted_loss`` per image, with
      metrics ``loss``, and ``elbo``, ``reconstruction``, ``kl_z``, ``kl_c`` in
      nats per image.
    sample: ``(params, images, key, num_samples) -> (num_samples, height, width,
      1)`` pixel probabilities of new images given the set ``images``: c is the
      mean of q(c | D), each z drawn from p(z_l | z_{l-1}, c).
    classify: ``(params, support, support_labels, query, num_classes) ->
      (queries, num_classes)`` logits, -KL(q(c | {x}) || q(c | S_k)).
    image_shape: ``(height, width, 1)``.
  """

  init: Callable[[PRNGKey, jax.Array], Params]
  context: Callable[..., Gaussian]
  class_contexts: Callable[..., Gaussian]
  elbo_terms: Callable[..., ElboTerms]
  loss: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
  sample: Callable[..., jax.Array]
  classify: Callable[..., jax.Array]
  image_shape: tuple[int, int, int]


def standard_normal_kl(q: Gaussian) -> jax.Array:
  """KL(q || N(0, I)) = sum_d [(mu^2 + s^2 - 1) / 2 - log s], over the last axis."""
  return diagonal_gaussian_kl(
    q.mean, q.std, jnp.zeros_like(q.mean), jnp.ones_like(q.std)
  )


def kl_logits(queries: Gaussian, classes: Gaussian) -> jax.Array:
  """``(queries, classes)`` logits -KL(q_i || p_k): the arg-max is the class whose
  posterior is closest to the query's in KL (Edwards & Storkey, 2017)."""
  shape = (queries.mean.shape[0], classes.mean.shape[0], queries.mean.shape[-1])
  q = jax.tree.map(lambda a: jnp.broadcast_to(a[:, None], shape), queries)
  p = jax.tree.map(lambda a: jnp.broadcast_to(a[None], shape), classes)
  return -diagonal_gaussian_kl(q.mean, q.std, p.mean, p.std)


def weighted_loss(terms: ElboTerms, alpha: jax.Array | float, num_images: int):
  """-[(1 + alpha) R - (KL_z + KL_c) / (1 + alpha)] / n: the negative lower bound
  per image at alpha = 0; the reference implementation's reweighting otherwise."""
  weight = 1.0 + alpha
  kl = terms.kl_z + terms.kl_c
  return -(weight * terms.reconstruction - kl / weight) / num_images


def dynamic_binarization(key: PRNGKey, images: jax.Array) -> jax.Array:
  """Each pixel ~ Bernoulli(its intensity), redrawn every time (float32)."""
  return jax.random.bernoulli(key, images).astype(jnp.float32)


def _reparameterize(key: PRNGKey, q: Gaussian) -> jax.Array:
  return q.mean + q.std * jax.random.normal(key, q.mean.shape, q.mean.dtype)


def neural_statistician(
  *,
  image_shape: tuple[int, int, int] = (28, 28, 1),
  channels: Sequence[int] = (32, 64),
  features: int = 256,
  hidden: int = 256,
  context_size: int = 64,
  latent_size: int = 16,
  num_latent_layers: int = 3,
  residual_layers: int = 2,
  min_std: float = 1e-3,
) -> NeuralStatistician:
  """The neural statistician for sets of binary images (Edwards & Storkey, 2017).

  Args:
    image_shape: ``(height, width, 1)``; height and width divisible by
      ``2 ** len(channels)``.
    channels: per encoder stage (two 3x3 convolutions, the second of stride 2);
      the decoder mirrors them.
    features: width of the encoder's feature vector h.
    hidden: width of every dense layer after the encoder.
    context_size: dimension of c. latent_size: of each z_l.
    num_latent_layers: L, the stochastic z layers (the paper: 3).
    residual_layers: dense layers in each Gaussian network's residual block.
    min_std: floor of every std.

  Example::

    model = neural_statistician()
    params = model.init(jax.random.key(0), jnp.zeros((5, 28, 28, 1)))
    loss, metrics = model.loss(params, sets, jax.random.key(1), alpha=1.0)
  """
  image_shape = tuple(int(s) for s in image_shape)
  channels = tuple(check_positive_int(c, 'channels entry') for c in channels)
  for value, name in (
    (features, 'features'),
    (hidden, 'hidden'),
    (context_size, 'context_size'),
    (latent_size, 'latent_size'),
    (num_latent_layers, 'num_latent_layers'),
    (residual_layers, 'residual_layers'),
  ):
    check_positive_int(value, name)
  check_positive_real(min_std, 'min_std')
  scale = 2 ** len(channels)
  if len(image_shape) != 3 or image_shape[0] % scale or image_shape[1] % scale:
    raise ValueError(
      f'image_shape {image_shape} must be (height, width, channels) with height '
      f'and width divisible by 2 ** len(channels) = {scale}; use fewer channel '
      'stages or pad the images.'
    )
  encoder = ConvEncoder(channels, features)
  prepool = PrePool(hidden)
  postpool = GaussianHead(context_size, hidden, residual_layers, min_std)
  head = GaussianHead(latent_size, hidden, residual_layers, min_std)
  decoder = ObservationDecoder(channels, hidden, image_shape)

  def check_images(images, name: str = 'images') -> None:
    shape = tuple(jnp.shape(images))
    if len(shape) != 4 or shape[1:] != image_shape:
      raise ValueError(
        f'{name} has shape {shape}; one set is (n, *{image_shape}) images '
        f'(the image_shape the model was built for). Batch sets with vmap.'
      )
    if shape[0] == 0:
      raise ValueError(
        f'{name} is an empty set (shape {shape}); q(c | D) needs at least one image.'
      )

  def init(key: PRNGKey, example_images: jax.Array) -> Params:
    check_images(example_images, 'example_images')
    keys = iter(jax.random.split(key, 4 + 2 * num_latent_layers))
    x = jnp.zeros((1, *image_shape), jnp.float32)
    h = encoder.init(next(keys), x)
    params = {'encoder': h['params']}
    h = encoder.apply(h, x)
    e = prepool.init(next(keys), h)
    params['prepool'] = e['params']
    e = prepool.apply(e, h)
    params['postpool'] = postpool.init(next(keys), e)['params']
    c = jnp.zeros((1, context_size))
    z = jnp.zeros((1, latent_size))
    for layer in range(num_latent_layers):
      above = (z,) if layer else ()
      params[f'inference_{layer}'] = head.init(next(keys), h, *above, c)['params']
      params[f'prior_{layer}'] = head.init(next(keys), *above, c)['params']
    zs = jnp.zeros((1, latent_size * num_latent_layers))
    params['decoder'] = decoder.init(next(keys), zs, c)['params']
    return params

  def run(module, params, *args):
    return module.apply({'params': params}, *args)

  def pooled(params, h, weights) -> Gaussian:
    """q(c | set) from the weighted mean of e over the images (weights sum to 1)."""
    e = run(prepool, params['prepool'], h)
    return Gaussian(*run(postpool, params['postpool'], weights @ e))

  def context(params, images) -> Gaussian:
    check_images(images)
    h = run(encoder, params['encoder'], images)
    n = images.shape[0]
    return pooled(params, h, jnp.full((n,), 1.0 / n))

  def class_contexts(params, images, labels, num_classes: int) -> Gaussian:
    check_images(images)
    check_positive_int(num_classes, 'num_classes')
    if jnp.shape(labels) != images.shape[:1]:
      raise ValueError(
        f'labels has shape {jnp.shape(labels)}; it needs one label per image '
        f'({images.shape[0]},).'
      )
    h = run(encoder, params['encoder'], images)
    onehot = jax.nn.one_hot(labels, num_classes, dtype=h.dtype).T  # (classes, n)
    weights = onehot / jnp.maximum(onehot.sum(axis=1, keepdims=True), 1.0)
    return jax.vmap(lambda w: pooled(params, h, w))(weights)

  def elbo_terms(params, images, key) -> ElboTerms:
    check_images(images)
    c_key, *z_keys = jax.random.split(key, 1 + num_latent_layers)
    h = run(encoder, params['encoder'], images)
    n = images.shape[0]
    q_c = pooled(params, h, jnp.full((n,), 1.0 / n))
    c = _reparameterize(c_key, q_c)
    z, zs, kl_z = None, [], 0.0
    for layer in range(num_latent_layers):
      above = (z,) if layer else ()
      q_z = Gaussian(*run(head, params[f'inference_{layer}'], h, *above, c))
      p_z = Gaussian(*run(head, params[f'prior_{layer}'], *above, c))
      shape = q_z.mean.shape
      p_z = jax.tree.map(lambda a, shape=shape: jnp.broadcast_to(a, shape), p_z)
      kl_z = kl_z + jnp.sum(diagonal_gaussian_kl(*q_z, *p_z))
      z = _reparameterize(z_keys[layer], q_z)
      zs.append(z)
    logits = run(decoder, params['decoder'], jnp.concatenate(zs, -1), c)
    reconstruction = jnp.sum(bernoulli_log_likelihood(logits, images))
    return ElboTerms(reconstruction, kl_z, standard_normal_kl(q_c))

  def loss(params, sets, key, alpha):
    if jnp.ndim(sets) != 5:
      raise ValueError(
        f'sets has shape {jnp.shape(sets)}; loss takes a batch of sets '
        f'(batch, n, *{image_shape}).'
      )
    keys = jax.random.split(key, sets.shape[0])
    terms = jax.vmap(lambda s, k: elbo_terms(params, s, k))(sets, keys)
    n = sets.shape[1]
    value = jnp.mean(weighted_loss(terms, alpha, n))
    per_image = jax.tree.map(lambda t: jnp.mean(t) / n, terms)
    metrics = {
      'loss': value,
      'elbo': per_image.reconstruction - per_image.kl_z - per_image.kl_c,
      **per_image._asdict(),
    }
    return value, metrics

  def sample(params, images, key, num_samples: int) -> jax.Array:
    c = context(params, images).mean
    z, zs = None, []
    for layer, k in enumerate(jax.random.split(key, num_latent_layers)):
      above = (z,) if layer else ()
      p_z = Gaussian(*run(head, params[f'prior_{layer}'], *above, c))
      shape = (num_samples, latent_size)
      z = p_z.mean + p_z.std * jax.random.normal(k, shape)
      zs.append(z)
    logits = run(decoder, params['decoder'], jnp.concatenate(zs, -1), c)
    return jax.nn.sigmoid(logits)

  def classify(params, support, support_labels, query, num_classes: int):
    check_images(query, 'query')
    classes = class_contexts(params, support, support_labels, num_classes)
    h = run(encoder, params['encoder'], query)
    singles = jax.vmap(lambda hi: pooled(params, hi[None], jnp.ones((1,))))(h)
    return kl_logits(singles, classes)

  return NeuralStatistician(
    init, context, class_contexts, elbo_terms, loss, sample, classify, image_shape
  )
