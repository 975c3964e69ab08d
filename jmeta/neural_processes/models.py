"""Conditional, latent and attentive neural processes as ``NeuralProcess``es.

All three encode a context {(x_i, y_i)} with MLPs on the pairs [x_i, y_i] and decode
a diagonal Gaussian at each target x with an MLP on [r, z, x]:

* CNP (Garnelo et al., 2018a): r = mean_i h(x_i, y_i); no z. Loss: -(1/T) sum_t
  log p(y_t | r, x_t).
* NP (Garnelo et al., 2018b): z ~ q(z | s), s = mean_i g(x_i, y_i), q Gaussian with
  std 0.1 + 0.9 sigmoid(.); by default also the CNP's deterministic r (the NP of
  DeepMind's ANP notebook and Kim et al., 2019; ``deterministic_path=False`` is
  Garnelo et al.'s latent path alone). Loss: the negative ELBO per target point,
  -(1/T) [sum_t E_{q(z|T)} log p(y_t | r, z, x_t) - KL(q(z|T) || q(z|C))], one
  reparameterised z from q(z | targets), as the notebook does.
* ANP (Kim et al., 2019): the NP with r_t = MultiHead(q(x_t), k(x_C), h(x_C, y_C)),
  each target's cross-attention over the context (keys and queries through one
  shared MLP of x, 8 heads, as in the notebook); optionally a self-attention layer
  on the context's features in both paths, as in the paper.

The decoder's std is ``min_std + (1 - min_std) softplus(.)``, 0.1 + 0.9 softplus in
the notebooks, so no target is fitted with a vanishing variance. Default widths
are the notebooks': 128 everywhere, 4-layer encoders, a decoder with 2 hidden
layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypedDict

import jax
import jax.numpy as jnp

from jmeta.losses import diagonal_gaussian_kl, gaussian_log_likelihood
from jmeta.models.layers import dense, dense_init
from jmeta.models.mlp import mlp
from jmeta.neural_processes.attention import (
  multihead_attention,
  multihead_attention_init,
  self_attention,
  self_attention_init,
)
from jmeta.neural_processes.base import (
  NeuralProcess,
  Predictive,
  check_context_arrays,
)
from jmeta.options import lists_options
from jmeta.tasks.batch import Task
from jmeta.validation import check_bool, check_positive_int, check_positive_real

if TYPE_CHECKING:
  from typing_extensions import Unpack

MEAN = 'mean'
ATTENTION = 'attention'


def _check_sizes(sizes: Sequence[int], name: str) -> tuple[int, ...]:
  if isinstance(sizes, (int, str)) or len(sizes) < 1:
    raise ValueError(f'{name} must be a non-empty sequence of widths, got {sizes!r}.')
  return tuple(check_positive_int(s, f'{name} entry') for s in sizes)


def _stack(sizes: tuple[int, ...]):
  """An MLP whose layers have widths ``sizes`` (the last linear)."""
  return mlp(sizes[:-1], sizes[-1])


def _build(
  name: str,
  *,
  output_size: int,
  encoder_sizes: tuple[int, ...],
  decoder_sizes: tuple[int, ...],
  deterministic: str | None,
  min_std: float,
  latent_sizes: tuple[int, ...] | None = None,
  num_latents: int = 0,
  attention_sizes: tuple[int, ...] = (1,),
  num_heads: int = 1,
  with_self_attention: bool = False,
) -> NeuralProcess:
  """The neural process ``name``; by default with no latent path and no attention."""
  latent = latent_sizes is not None
  encoder = _stack(encoder_sizes)
  queries = _stack(attention_sizes)
  latent_encoder = _stack(latent_sizes) if latent else None
  decoder = mlp(decoder_sizes, 2 * output_size)
  width = encoder_sizes[-1]

  def init(key: jax.Array, example_inputs: jax.Array) -> dict:
    if jnp.ndim(example_inputs) < 1:
      raise ValueError(
        f'{name}.init reads the input width from example_inputs (points, '
        f'input_size); got shape {jnp.shape(example_inputs)}.'
      )
    input_size = jnp.shape(example_inputs)[-1]
    pair = jnp.zeros((1, input_size + output_size), jnp.float32)
    x = jnp.zeros((1, input_size), jnp.float32)
    keys = iter(jax.random.split(key, 9))  # one per component, at most nine
    params, decoder_in = {}, input_size
    if deterministic is not None:
      params['deterministic'] = encoder.init(next(keys), pair)
      decoder_in += width
      if with_self_attention:
        params['deterministic_self_attention'] = self_attention_init(
          next(keys), width, num_heads
        )
      if deterministic == ATTENTION:
        params['queries'] = queries.init(next(keys), x)
        q = attention_sizes[-1]
        params['cross_attention'] = multihead_attention_init(
          next(keys), q, q, width, num_heads
        )
    if latent:
      params['latent'] = latent_encoder.init(next(keys), pair)
      s = latent_sizes[-1]
      if with_self_attention:
        params['latent_self_attention'] = self_attention_init(next(keys), s, num_heads)
      # The notebook's penultimate width, halfway between s and the latent size.
      params['latent_hidden'] = dense_init(next(keys), s, (s + num_latents) // 2)
      params['latent_out'] = dense_init(
        next(keys), (s + num_latents) // 2, 2 * num_latents
      )
      decoder_in += num_latents
    params['decoder'] = decoder.init(next(keys), jnp.zeros((1, decoder_in)))
    return params

  def check(params, cx, cy, tx, ty=None):
    first = params['latent' if latent else 'deterministic']['layer_0']['w']
    input_size = first.shape[0] - output_size
    check_context_arrays(input_size, output_size, cx, cy, tx, ty)

  def representation(params, cx, cy, tx):
    """r_t for each target, ``(targets, width)``; None without the path."""
    if deterministic is None:
      return None
    h = encoder.apply(params['deterministic'], jnp.concatenate([cx, cy], -1))
    if with_self_attention:
      h = self_attention(params['deterministic_self_attention'], h)
    if deterministic == MEAN:
      return jnp.broadcast_to(jnp.mean(h, axis=0), (tx.shape[0], h.shape[-1]))
    k = queries.apply(params['queries'], cx)
    q = queries.apply(params['queries'], tx)
    return multihead_attention(params['cross_attention'], q, k, h)

  def latent_distribution(params, x, y) -> Predictive:
    """q(z | {(x_i, y_i)}): its mean and std, each ``(num_latents,)``."""
    h = latent_encoder.apply(params['latent'], jnp.concatenate([x, y], -1))
    if with_self_attention:
      h = self_attention(params['latent_self_attention'], h)
    s = jnp.mean(h, axis=0)
    hidden = params['latent_hidden']
    s = jax.nn.relu(dense(s, hidden['w'], hidden['b']))
    out = dense(s, params['latent_out']['w'], params['latent_out']['b'])
    mean, raw = jnp.split(out, 2, axis=-1)
    return Predictive(mean, 0.1 + 0.9 * jax.nn.sigmoid(raw))

  def decode(params, r, z, tx) -> Predictive:
    parts = [] if r is None else [r]
    if z is not None:
      parts.append(jnp.broadcast_to(z, (tx.shape[0], z.shape[-1])))
    out = decoder.apply(params['decoder'], jnp.concatenate(parts + [tx], -1))
    mean, raw = jnp.split(out, 2, axis=-1)
    return Predictive(mean, min_std + (1 - min_std) * jax.nn.softplus(raw))

  def predict(params, context_x, context_y, target_x) -> Predictive:
    check(params, context_x, context_y, target_x)
    r = representation(params, context_x, context_y, target_x)
    z = latent_distribution(params, context_x, context_y).mean if latent else None
    return decode(params, r, z, target_x)

  def prior_draws(params, cx, cy, key, num_samples):
    num_samples = check_positive_int(num_samples, 'num_samples')
    prior = latent_distribution(params, cx, cy)
    eps = jax.random.normal(key, (num_samples,) + prior.mean.shape, prior.mean.dtype)
    return prior.mean + prior.std * eps

  def sample_predictive(params, context_x, context_y, target_x, key, num_samples):
    if not latent:
      one = predict(params, context_x, context_y, target_x)
      num_samples = check_positive_int(num_samples, 'num_samples')
      return jax.tree.map(lambda a: jnp.broadcast_to(a, (num_samples,) + a.shape), one)
    check(params, context_x, context_y, target_x)
    r = representation(params, context_x, context_y, target_x)
    zs = prior_draws(params, context_x, context_y, key, num_samples)
    return jax.vmap(lambda z: decode(params, r, z, target_x))(zs)

  def loss(params, task: Task, key):
    cx, cy, tx, ty = task
    check(params, cx, cy, tx, ty)
    r = representation(params, cx, cy, tx)
    if not latent:
      ll = jnp.mean(gaussian_log_likelihood(*decode(params, r, None, tx), ty))
      return -ll, {'loss': -ll, 'log_likelihood': ll}
    prior = latent_distribution(params, cx, cy)
    posterior = latent_distribution(params, tx, ty)
    eps = jax.random.normal(key, posterior.mean.shape, posterior.mean.dtype)
    z = posterior.mean + posterior.std * eps
    ll = gaussian_log_likelihood(*decode(params, r, z, tx), ty)
    kl = diagonal_gaussian_kl(*posterior, *prior)
    value = -(jnp.sum(ll) - kl) / ty.shape[0]
    return value, {'loss': value, 'log_likelihood': jnp.mean(ll), 'kl': kl}

  def log_likelihood(params, task: Task, key, num_samples: int = 1):
    cx, cy, tx, ty = task
    if not latent:
      return -loss(params, task, None)[0]
    check(params, cx, cy, tx, ty)
    r = representation(params, cx, cy, tx)
    zs = prior_draws(params, cx, cy, key, num_samples)
    per_z = jax.vmap(
      lambda z: jnp.sum(gaussian_log_likelihood(*decode(params, r, z, tx), ty))
    )(zs)
    log_mean = jax.nn.logsumexp(per_z) - jnp.log(zs.shape[0]).astype(per_z.dtype)
    return log_mean / ty.shape[0]

  return NeuralProcess(
    name, init, predict, loss, log_likelihood, sample_predictive, latent
  )


def _common(output_size, encoder_sizes, decoder_sizes, min_std) -> dict:
  """The checked options every neural process has, as ``_build``'s arguments."""
  common = {
    'output_size': check_positive_int(output_size, 'output_size'),
    'encoder_sizes': _check_sizes(encoder_sizes, 'encoder_sizes'),
    'decoder_sizes': _check_sizes(decoder_sizes, 'decoder_sizes'),
    'min_std': check_positive_real(min_std, 'min_std'),
  }
  if common['min_std'] >= 1:
    raise ValueError(f'min_std must be in (0, 1), got {common["min_std"]}.')
  return common


class LatentPathOptions(TypedDict, total=False):
  """The latent path of the NP and the ANP: ``latent_sizes``, the latent encoder's
  widths before aggregation, and ``num_latents``, z's size (the notebook's 4 x 128
  and 128 by default)."""

  latent_sizes: Sequence[int]
  num_latents: int


def _latent_path(
  latent_sizes: Sequence[int] = (128, 128, 128, 128), num_latents: int = 128
) -> dict:
  """The checked ``LatentPathOptions``, as ``_build``'s arguments."""
  return {
    'latent_sizes': _check_sizes(latent_sizes, 'latent_sizes'),
    'num_latents': check_positive_int(num_latents, 'num_latents'),
  }


def conditional_neural_process(
  output_size: int = 1,
  *,
  encoder_sizes: Sequence[int] = (128, 128, 128, 128),
  decoder_sizes: Sequence[int] = (128, 128),
  min_std: float = 0.1,
) -> NeuralProcess:
  """The CNP (Garnelo et al., 2018a): r = mean_i h([x_i, y_i]), p(y | r, x) Gaussian.

  ``encoder_sizes`` are h's widths (the last is r's, linear); ``decoder_sizes`` the
  decoder's hidden widths (it outputs 2 * ``output_size``: mean and std).
  """
  return _build(
    'cnp',
    **_common(output_size, encoder_sizes, decoder_sizes, min_std),
    deterministic=MEAN,
  )


@lists_options(LatentPathOptions, _latent_path)
def latent_neural_process(
  output_size: int = 1,
  *,
  encoder_sizes: Sequence[int] = (128, 128, 128, 128),
  decoder_sizes: Sequence[int] = (128, 128),
  deterministic_path: bool = True,
  min_std: float = 0.1,
  **latent: Unpack[LatentPathOptions],
) -> NeuralProcess:
  """The NP (Garnelo et al., 2018b): a Gaussian latent z ~ q(z | context), trained
  on the ELBO, beside the CNP's mean-aggregated r unless ``deterministic_path`` is
  False (see the module docstring). ``latent`` sets the latent path
  (``LatentPathOptions``).
  """
  common = _common(output_size, encoder_sizes, decoder_sizes, min_std)
  deterministic_path = check_bool(deterministic_path, 'deterministic_path')
  return _build(
    'np',
    **common,
    **_latent_path(**latent),
    deterministic=MEAN if deterministic_path else None,
  )


@lists_options(LatentPathOptions, _latent_path)
def attentive_neural_process(
  output_size: int = 1,
  *,
  encoder_sizes: Sequence[int] = (128, 128, 128, 128),
  attention_sizes: Sequence[int] = (128, 128),
  num_heads: int = 8,
  decoder_sizes: Sequence[int] = (128, 128),
  self_attention: bool = False,
  min_std: float = 0.1,
  **latent: Unpack[LatentPathOptions],
) -> NeuralProcess:
  """The ANP (Kim et al., 2019): the NP whose deterministic r_t is multihead
  cross-attention from target x_t to the context (``num_heads`` heads over values
  of width ``encoder_sizes[-1]``, keys and queries from one MLP of x with widths
  ``attention_sizes``). ``self_attention`` adds one self-attention layer
  (``jmeta.neural_processes.attention.self_attention``) on the context's features
  in both paths, as the paper's ANP; the notebook leaves it out. ``latent`` sets
  the latent path (``LatentPathOptions``).
  """
  common = _common(output_size, encoder_sizes, decoder_sizes, min_std)
  latent = _latent_path(**latent)
  num_heads = check_positive_int(num_heads, 'num_heads')
  self_attention = check_bool(self_attention, 'self_attention')
  attended = {'encoder_sizes': common['encoder_sizes'][-1]}
  if self_attention:
    attended['latent_sizes'] = latent['latent_sizes'][-1]
  for what, width in attended.items():
    if width % num_heads:
      raise ValueError(
        f'num_heads={num_heads} does not divide the attended width {width} (the '
        f'last of {what}); each head takes an equal share of it.'
      )
  return _build(
    'anp',
    **common,
    **latent,
    deterministic=ATTENTION,
    attention_sizes=_check_sizes(attention_sizes, 'attention_sizes'),
    num_heads=num_heads,
    with_self_attention=self_attention,
  )
