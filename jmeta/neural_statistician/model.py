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

With ``batch_norm`` (the reference code's networks), ``loss`` normalises by the
statistics of its batch of sets and returns the updated running averages, which
every other function uses (``with_batch_stats`` puts them into the params).

With ``sample_dropout`` (the reference code's ``sample_dropout``), ``loss`` leaves
each image but the first out of the pool with that probability, so that the
statistic network learns posteriors of sets of 1 to n images, which few-shot
classification asks of it; every image is still reconstructed from the c so drawn.
With ``pool_count`` (the reference's choice) q(c | D) also takes the number pooled;
without it, it trained better on Omniglot (the README's ablations).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jmeta.losses import bernoulli_log_likelihood, diagonal_gaussian_kl
from jmeta.models.base import Params, PRNGKey
from jmeta.neural_statistician.networks import (
  SET_AXIS,
  ConvEncoder,
  GaussianHead,
  ObservationDecoder,
  PrePool,
)
from jmeta.validation import check_positive_int, check_positive_real

# The params entry that holds the batch norms' running averages, per network.
BATCH_STATS = 'batch_stats'
# The fold_in index of a set's key that draws its sample-dropout mask: past the
# indices of the key's split (fold_in(key, i) is split(key, n)[i] under JAX's
# partitionable threefry), so the other draws stay as they were.
_SAMPLE_DROPOUT_STREAM = 1_000_003


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
    loss: ``(params, sets, key, alpha) -> (scalar, (metrics, batch_stats))`` over
      a batch of sets ``(batch, n, height, width, 1)``: ``weighted_loss`` per
      image, with metrics ``loss``, and ``elbo``, ``reconstruction``, ``kl_z``,
      ``kl_c`` in nats per image; ``batch_stats``: the batch norms' running
      averages after this batch (``{}`` without batch norm), for
      ``with_batch_stats``. Its gradient with respect to them is zero.
    sample: ``(params, images, key, num_samples) -> (num_samples, height, width,
      1)`` pixel probabilities of new images given the set ``images``: c is the
      mean of q(c | D), each z drawn from p(z_l | z_{l-1}, c).
    classify: ``(params, support, support_labels, query, num_classes) ->
      (queries, num_classes)`` logits, -KL(q(c | {x}) || q(c | S_k)).
    with_batch_stats: ``(params, batch_stats) -> params`` with ``loss``'s running
      averages in place (``params`` itself without batch norm).
    image_shape: ``(height, width, 1)``.
  """

  init: Callable[[PRNGKey, jax.Array], Params]
  context: Callable[..., Gaussian]
  class_contexts: Callable[..., Gaussian]
  elbo_terms: Callable[..., ElboTerms]
  loss: Callable[..., tuple[jax.Array, tuple[dict[str, jax.Array], dict]]]
  sample: Callable[..., jax.Array]
  classify: Callable[..., jax.Array]
  with_batch_stats: Callable[[Params, dict], Params]
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
  convs_per_stage: int = 2,
  decoder_convs_per_stage: int = 0,
  batch_norm: bool = False,
  sample_dropout: float | None = None,
  pool_count: bool = True,
) -> NeuralStatistician:
  """The neural statistician for sets of binary images (Edwards & Storkey, 2017).

  Args:
    image_shape: ``(height, width, 1)``.
    channels: per encoder stage (``convs_per_stage`` 3x3 convolutions, the last
      of stride 2); the decoder mirrors them.
    features: width of the encoder's feature vector h, a dense layer after the
      convolutions; None: the flattened last map itself (the reference code).
    hidden: width of every dense layer after the encoder.
    context_size: dimension of c. latent_size: of each z_l.
    num_latent_layers: L, the stochastic z layers (the paper: 3).
    residual_layers: dense layers in each Gaussian network's residual block.
    min_std: floor of every std.
    convs_per_stage: encoder convolutions per stage (the reference code: 3).
    decoder_convs_per_stage: stride-1 convolutions per decoder stage before its
      upsampling (the reference code: 2).
    batch_norm: batch-normalise every hidden layer, and each Gaussian's
      parameters globally, as the reference code does (``networks``).
    sample_dropout: None: q(c | D) from the mean over the set alone (the paper).
      A probability in [0, 1]: in ``loss`` each image but the first is left out of
      the pool with this probability (the reference code's ``sample_dropout``, 0.5,
      written there but switched off; the public replication ashysheya/neural-stat,
      whose README reports 95.7% and 98.5% at 5-way 1- and 5-shot, trains with 0.2).
    pool_count: with ``sample_dropout``, whether q(c | D) takes the number of
      images pooled (the reference code: yes); without, ignored.

  The reference code's networks (conormdurkan/neural-statistician, Omniglot):
  ``channels=(64, 128, 256), convs_per_stage=3, decoder_convs_per_stage=2,
  features=None, hidden=256, context_size=512, num_latent_layers=1,
  residual_layers=3, batch_norm=True``.

  Example::

    model = neural_statistician()
    params = model.init(jax.random.key(0), jnp.zeros((5, 28, 28, 1)))
    loss, (metrics, stats) = model.loss(params, sets, jax.random.key(1), alpha=1.0)
  """
  image_shape = tuple(int(s) for s in image_shape)
  channels = tuple(check_positive_int(c, 'channels entry') for c in channels)
  if features is not None:
    check_positive_int(features, 'features')
  if not isinstance(decoder_convs_per_stage, int) or decoder_convs_per_stage < 0:
    raise ValueError(
      f'decoder_convs_per_stage must be an int >= 0, got {decoder_convs_per_stage!r}.'
    )
  if not isinstance(batch_norm, bool):
    raise ValueError(f'batch_norm must be True or False, got {batch_norm!r}.')
  if sample_dropout is not None and not (
    isinstance(sample_dropout, (int, float))
    and not isinstance(sample_dropout, bool)
    and 0 <= sample_dropout <= 1
  ):
    raise ValueError(
      f'sample_dropout must be None or a probability in [0, 1], got {sample_dropout!r}.'
    )
  if not isinstance(pool_count, bool):
    raise ValueError(f'pool_count must be True or False, got {pool_count!r}.')
  counted = sample_dropout is not None and pool_count
  for value, name in (
    (convs_per_stage, 'convs_per_stage'),
    (hidden, 'hidden'),
    (context_size, 'context_size'),
    (latent_size, 'latent_size'),
    (num_latent_layers, 'num_latent_layers'),
    (residual_layers, 'residual_layers'),
  ):
    check_positive_int(value, name)
  check_positive_real(min_std, 'min_std')
  if len(image_shape) != 3 or min(image_shape) < 1:
    raise ValueError(
      f'image_shape {image_shape} must be (height, width, channels), each >= 1.'
    )
  norm = {'batch_norm': batch_norm, 'axis_name': SET_AXIS}
  encoder = ConvEncoder(channels, features, convs_per_stage, **norm)
  prepool = PrePool(hidden, **norm)
  postpool = GaussianHead(context_size, hidden, residual_layers, min_std, **norm)
  head = GaussianHead(latent_size, hidden, residual_layers, min_std, **norm)
  decoder = ObservationDecoder(
    channels, hidden, image_shape, decoder_convs_per_stage, **norm
  )

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
    variables = {}

    def add(name, module, *args):
      variables[name] = module.init(next(keys), *args)
      return module.apply(variables[name], *args)

    x = jnp.zeros((1, *image_shape), jnp.float32)
    h = add('encoder', encoder, x)
    e = add('prepool', prepool, h)
    add('postpool', postpool, e, *([jnp.ones((1, 1))] if counted else []))
    c = jnp.zeros((1, context_size))
    z = jnp.zeros((1, latent_size))
    for layer in range(num_latent_layers):
      above = (z,) if layer else ()
      add(f'inference_{layer}', head, h, *above, c)
      add(f'prior_{layer}', head, *above, c)
    zs = jnp.zeros((1, latent_size * num_latent_layers))
    add('decoder', decoder, zs, c)
    params = {name: v['params'] for name, v in variables.items()}
    if batch_norm:
      params[BATCH_STATS] = {n: v[BATCH_STATS] for n, v in variables.items()}
    return params

  def run(module, name, params, *args, stats=None):
    """``module``'s output; in training (``stats`` a dict) by batch statistics,
    with the updated running averages stored in ``stats[name]``."""
    if not batch_norm:
      return module.apply({'params': params[name]}, *args)
    variables = {'params': params[name], BATCH_STATS: params[BATCH_STATS][name]}
    if stats is None:
      return module.apply(variables, *args)
    out, updates = module.apply(variables, *args, train=True, mutable=[BATCH_STATS])
    stats[name] = updates[BATCH_STATS]
    return out

  def with_batch_stats(params, batch_stats) -> Params:
    return {**params, BATCH_STATS: batch_stats} if batch_norm else params

  def pooled(params, h, weights, stats=None) -> Gaussian:
    """q(c | set) from the weighted mean of e over the images (the weights sum to
    1; a zero leaves an image out), with the number pooled if ``counted``."""
    e = run(prepool, 'prepool', params, h, stats=stats)
    inputs = [weights @ e]
    if counted:
      inputs.append(jnp.sum(weights > 0, keepdims=True).astype(e.dtype))
    return Gaussian(*run(postpool, 'postpool', params, *inputs, stats=stats))

  def context(params, images) -> Gaussian:
    check_images(images)
    h = run(encoder, 'encoder', params, images)
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
    h = run(encoder, 'encoder', params, images)
    onehot = jax.nn.one_hot(labels, num_classes, dtype=h.dtype).T  # (classes, n)
    weights = onehot / jnp.maximum(onehot.sum(axis=1, keepdims=True), 1.0)
    return jax.vmap(lambda w: pooled(params, h, w))(weights)

  def bound(params, images, key, stats=None) -> ElboTerms:
    c_key, *z_keys = jax.random.split(key, 1 + num_latent_layers)
    h = run(encoder, 'encoder', params, images, stats=stats)
    n = images.shape[0]
    weights = jnp.full((n,), 1.0 / n)
    if sample_dropout and stats is not None:  # training
      mask_key = jax.random.fold_in(key, _SAMPLE_DROPOUT_STREAM)
      kept = jax.random.bernoulli(mask_key, 1 - sample_dropout, (n,)).at[0].set(True)
      weights = kept / jnp.sum(kept)
    q_c = pooled(params, h, weights, stats)
    c = _reparameterize(c_key, q_c)
    z, zs, kl_z = None, [], 0.0
    for layer in range(num_latent_layers):
      above = (z,) if layer else ()
      q_z = Gaussian(
        *run(head, f'inference_{layer}', params, h, *above, c, stats=stats)
      )
      p_z = Gaussian(*run(head, f'prior_{layer}', params, *above, c, stats=stats))
      shape = q_z.mean.shape
      p_z = jax.tree.map(lambda a, shape=shape: jnp.broadcast_to(a, shape), p_z)
      kl_z = kl_z + jnp.sum(diagonal_gaussian_kl(*q_z, *p_z))
      z = _reparameterize(z_keys[layer], q_z)
      zs.append(z)
    zs = jnp.concatenate(zs, -1)
    logits = run(decoder, 'decoder', params, zs, c, stats=stats)
    reconstruction = jnp.sum(bernoulli_log_likelihood(logits, images))
    return ElboTerms(reconstruction, kl_z, standard_normal_kl(q_c))

  def elbo_terms(params, images, key) -> ElboTerms:
    check_images(images)
    return bound(params, images, key)

  def training_bound(params, images, key):
    stats = {}
    terms = bound(params, images, key, stats)
    return terms, stats

  def loss(params, sets, key, alpha):
    if jnp.ndim(sets) != 5:
      raise ValueError(
        f'sets has shape {jnp.shape(sets)}; loss takes a batch of sets '
        f'(batch, n, *{image_shape}).'
      )
    keys = jax.random.split(key, sets.shape[0])
    one_set = functools.partial(training_bound, params)
    terms, stats = jax.vmap(one_set, axis_name=SET_AXIS)(sets, keys)
    # Every set computed the same running averages (the statistics are shared
    # across the vmap), so the first set's are the batch's.
    stats = jax.tree.map(lambda a: a[0], stats)
    n = sets.shape[1]
    value = jnp.mean(weighted_loss(terms, alpha, n))
    per_image = jax.tree.map(lambda t: jnp.mean(t) / n, terms)
    metrics = {
      'loss': value,
      'elbo': per_image.reconstruction - per_image.kl_z - per_image.kl_c,
      **per_image._asdict(),
    }
    return value, (metrics, stats)

  def sample(params, images, key, num_samples: int) -> jax.Array:
    c = context(params, images).mean
    z, zs = None, []
    for layer, k in enumerate(jax.random.split(key, num_latent_layers)):
      above = (z,) if layer else ()
      p_z = Gaussian(*run(head, f'prior_{layer}', params, *above, c))
      shape = (num_samples, latent_size)
      z = p_z.mean + p_z.std * jax.random.normal(k, shape)
      zs.append(z)
    logits = run(decoder, 'decoder', params, jnp.concatenate(zs, -1), c)
    return jax.nn.sigmoid(logits)

  def classify(params, support, support_labels, query, num_classes: int):
    check_images(query, 'query')
    classes = class_contexts(params, support, support_labels, num_classes)
    h = run(encoder, 'encoder', params, query)
    singles = jax.vmap(lambda hi: pooled(params, hi[None], jnp.ones((1,))))(h)
    return kl_logits(singles, classes)

  return NeuralStatistician(
    init,
    context,
    class_contexts,
    elbo_terms,
    loss,
    sample,
    classify,
    with_batch_stats,
    image_shape,
  )
