"""Meta Networks (Munkhdalai & Yu, 2017, "Meta Networks"), as their Omniglot code
(tsendeemts/MetaNet, ``MetaNetFull``) builds it.

Two networks of one shape, each ``conv_layers`` blocks of [3x3 conv (no bias),
ReLU, 2x2 max-pool rounding up] and two dense layers (no biases): the base learner
b, which classifies, and the dynamic representation learner u, whose outputs key a
memory. Fast weights come from loss gradients, preprocessed coordinatewise into
(log|g| / p, sign) pairs (``log_and_sign``) and mapped by small networks shared
over coordinates:

  Q*   = d(grad_Q L(u(Q, S_1)), ..., grad_Q L(u(Q, S_T)))   u's fast weights: an
         LSTM reads the gradients of T chunks of the support set S in turn
  W*_i = m(grad_W L(b(W, x_i), y_i))                     b's fast weights, one per
         support example, stored at the key r_i = u(Q, Q*, x_i)
  a    = softmax_i cos(u(Q, Q*, x), r_i),  W*(x) = sum_i a_i W*_i
  b(W, W*(x), x)                                         the query's logits

Layers with fast weights are layer-augmented: each convolution and the first
dense layer give relu(W h) + relu(W* h); b's last layer gives W h + W* h, and u's
key is its first dense layer K h + K* h, without ReLU. As in the reference code:

* the gradients enter d and m as inputs (``stop_gradient``): Chainer hands them
  over as plain arrays, so no second derivative flows through them;
* u's second dense layer (a classifier head over the episode's classes) serves only
  the loss whose gradients feed d, so it is never trained (a fixed random head);
* d is an LSTM of ``meta_hidden`` units with a linear read-out and m an MLP of two
  ``meta_hidden`` ReLU layers and a linear read-out, separate ones for the
  convolutions and for the dense layers; ``log_scale`` is the reference's k = 7.

At initialisation the fast weights are m's read-outs, of order one per coordinate
(against slow weights of order 1/sqrt(fan-in)), and they multiply through every
layer: depending on the draw, the first loss is anywhere from chance level to many
orders of magnitude above it. Adam's steps, whose size does not grow with the
gradient, bring it down to chance level within tens of updates.

Where it differs from the reference: d's LSTM is flax's ``LSTMCell`` with flax's
initialisation (orthogonal recurrent weights; Chainer's LSTM draws them LeCun
normal, with zero biases in both), and the cosine of the attention normalises each
vector on its own (``cosine_similarities``, eps 1e-8 under each root; the
reference: x.y / sqrt(|x|^2 |y|^2 + 1e-6)).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jmeta.losses import cross_entropy
from jmeta.metric.base import MetricLearner, classification_loss, cosine_similarities
from jmeta.models.layers import conv2d, resolve_conv_impl
from jmeta.validation import check_positive_int

Params = dict[str, Any]


def log_and_sign(grads: jax.Array, log_scale: float = 7.0) -> jax.Array:
  """The (log, sign) preprocessing of gradients (Andrychowicz et al., 2016), as
  MetaNet's code applies it: ``(..., 2)`` with

    max(log(|g| + eps) / k, -1)  and  clip(g e^k, -1, 1),  eps = the dtype's eps.
  """
  eps = jnp.finfo(grads.dtype).eps
  log = jnp.maximum(jnp.log(jnp.abs(grads) + eps) / log_scale, -1.0)
  sign = jnp.clip(grads * jnp.exp(log_scale), -1.0, 1.0)
  return jnp.stack([log, sign], axis=-1)


def max_pool_ceil(x: jax.Array) -> jax.Array:
  """2x2 max-pooling, stride 2, output ceil(size / 2) (NHWC), as Chainer's
  ``max_pooling_2d`` with its default ``cover_all=True``: 28 -> 14 -> 7 -> 4 -> 2 -> 1."""
  n, h, w, c = x.shape
  pad = ((0, 0), (0, h % 2), (0, w % 2), (0, 0))
  x = jnp.pad(x, pad, constant_values=-jnp.inf)
  return jnp.max(x.reshape(n, (h + 1) // 2, 2, (w + 1) // 2, 2, c), axis=(2, 4))


def _conv_relu(h: jax.Array, w: jax.Array, impl: str) -> jax.Array:
  return jax.nn.relu(conv2d(h, w, jnp.zeros((), w.dtype), stride=1, impl=impl))


def features(
  slow: Params, fast: Params | None, x: jax.Array, *, impl: str, per_example: bool
) -> jax.Array:
  """The convolutional trunk, flattened: ``(examples, features)``.

  Block i gives pool(relu(conv(h, W_i)) + relu(conv(h, W*_i))), or
  pool(relu(conv(h, W_i))) without fast weights (``fast=None``). With
  ``per_example`` every fast weight has a leading example axis: each example is
  convolved with its own kernels.
  """
  h = x
  i = 0
  while f'conv_{i}' in slow:
    y = _conv_relu(h, slow[f'conv_{i}'], impl)
    if fast is not None:
      w = fast[f'conv_{i}']
      if per_example:
        y = y + jax.vmap(lambda hi, wi: _conv_relu(hi[None], wi, impl)[0])(h, w)
      else:
        y = y + _conv_relu(h, w, impl)
    h = max_pool_ceil(y)
    i += 1
  return h.reshape(h.shape[0], -1)


def _dense(h: jax.Array, w: jax.Array, per_example: bool) -> jax.Array:
  return jnp.einsum('nf,nfo->no' if per_example else 'nf,fo->no', h, w)


def base_logits(
  slow: Params, fast: Params | None, x: jax.Array, *, impl: str, per_example: bool
) -> jax.Array:
  """b(W, W*, x): the trunk, relu(h W_0) + relu(h W*_0), then h W_1 + h W*_1."""
  h = features(slow, fast, x, impl=impl, per_example=per_example)
  hidden = jax.nn.relu(h @ slow['dense_0'])
  if fast is None:
    return hidden @ slow['dense_1']
  hidden = hidden + jax.nn.relu(_dense(h, fast['dense_0'], per_example))
  return hidden @ slow['dense_1'] + _dense(hidden, fast['dense_1'], per_example)


def key_logits(slow: Params, x: jax.Array, *, impl: str) -> jax.Array:
  """u(Q, x) with slow weights only and its classifier head: the logits whose loss
  gives d its gradients."""
  h = features(slow, None, x, impl=impl, per_example=False)
  return jax.nn.relu(h @ slow['dense_0']) @ slow['dense_1']


def keys(slow: Params, fast: Params, x: jax.Array, *, impl: str) -> jax.Array:
  """u(Q, Q*, x): the trunk with shared fast weights, then h K_0 + h K*_0."""
  h = features(slow, fast, x, impl=impl, per_example=False)
  return h @ slow['dense_0'] + h @ fast['dense_0']


def _net_init(key, in_shape, filters, conv_layers, num_classes, impl) -> Params:
  """LeCun-normal weights, Chainer's default for its convolutions and linear layers."""
  init = jax.nn.initializers.lecun_normal()
  keys_ = jax.random.split(key, conv_layers + 2)
  params, cin = {}, in_shape[-1]
  for i in range(conv_layers):
    params[f'conv_{i}'] = init(keys_[i], (3, 3, cin, filters), jnp.float32)
    cin = filters
  x = jax.ShapeDtypeStruct((1, *in_shape), jnp.float32)
  width = jax.eval_shape(
    lambda p, x: features(p, None, x, impl=impl, per_example=False), params, x
  ).shape[-1]
  params['dense_0'] = init(keys_[-2], (width, filters), jnp.float32)
  params['dense_1'] = init(keys_[-1], (filters, num_classes), jnp.float32)
  return params


def _split(tree: Params, names: tuple[str, ...]) -> tuple[Params, Params]:
  """(the conv weights, the named dense weights) of a network's params."""
  convs = {k: v for k, v in tree.items() if k.startswith('conv_')}
  return convs, {k: tree[k] for k in names}


def meta_networks(
  num_classes: int,
  *,
  filters: int = 64,
  conv_layers: int = 5,
  meta_hidden: int = 20,
  key_chunks: int = 5,
  log_scale: float = 7.0,
  conv_impl: str = 'auto',
) -> MetricLearner:
  """Meta Networks (see the module docstring) for ``num_classes``-way episodes.

  The defaults are the reference code's Omniglot model: five blocks of 64 filters
  (28x28 images pool to 1x1x64), a 64-unit dense layer, d and m of 20 units, the
  support set read by d in 5 chunks (its size must be a multiple of
  ``key_chunks``), and k = 7. ``params`` is ``{'base', 'key', 'd', 'm'}``. Both
  networks' heads have ``num_classes`` outputs, so a learner answers episodes of
  exactly that many ways (train one per setting, as the paper does).

  ``embed`` is None: u's representations depend on the support labels (through
  Q*), so the learner has no label-free embedding for ``with_embedding_loss``.
  """
  for value, name in (
    (num_classes, 'num_classes'),
    (filters, 'filters'),
    (conv_layers, 'conv_layers'),
    (meta_hidden, 'meta_hidden'),
    (key_chunks, 'key_chunks'),
  ):
    check_positive_int(value, name)
  if not (isinstance(log_scale, (int, float)) and log_scale > 0):
    raise ValueError(f'log_scale must be a positive number, got {log_scale!r}.')
  impl = resolve_conv_impl(conv_impl)  # refuses an unknown one
  lstm = nn.LSTMCell(features=meta_hidden)
  mlp = nn.Sequential(
    [nn.Dense(meta_hidden), nn.relu, nn.Dense(meta_hidden), nn.relu, nn.Dense(1)]
  )

  def coordinatewise(fn: Callable, grads: Params) -> Params:
    """``fn`` on the (coordinates, 2) preprocessed gradients, shaped like ``grads``."""
    flat, unravel = ravel_pytree(grads)
    return unravel(fn(log_and_sign(jax.lax.stop_gradient(flat), log_scale)))

  def key_fast_weights(params: Params, support_inputs, support_labels) -> Params:
    n = support_inputs.shape[0]
    if n % key_chunks:
      raise ValueError(
        f'meta_networks reads the support set in key_chunks={key_chunks} equal '
        f'chunks, but an episode has {n} support examples; use a key_chunks that '
        f'divides {n}.'
      )
    chunks = (
      support_inputs.reshape(key_chunks, n // key_chunks, *support_inputs.shape[1:]),
      support_labels.reshape(key_chunks, n // key_chunks),
    )

    def chunk_grads(x, y):
      loss = lambda p: cross_entropy(key_logits(p, x, impl=impl), y)  # noqa: E731
      return _split(jax.grad(loss)(params['key']), ('dense_0',))

    def read(cell_params, grads):
      """LSTM over the chunks' gradients, carried per coordinate; the last h."""
      flat = jax.vmap(lambda g: ravel_pytree(g)[0])(grads)  # (chunks, coords)
      inputs = log_and_sign(jax.lax.stop_gradient(flat), log_scale)
      zeros = jnp.zeros((inputs.shape[1], meta_hidden), inputs.dtype)
      carry = (zeros, zeros)  # (c, h), as LSTMCell.initialize_carry

      def step(carry, x):
        carry, h = lstm.apply({'params': cell_params['lstm']}, carry, x)
        return carry, h

      _, hs = jax.lax.scan(step, carry, inputs)
      out = nn.Dense(1).apply({'params': cell_params['out']}, hs[-1])[:, 0]
      return ravel_pytree(jax.tree.map(lambda g: g[0], grads))[1](out)

    conv_grads, dense_grads = jax.vmap(chunk_grads)(*chunks)
    return {
      **read(params['d']['conv'], conv_grads),
      **read(params['d']['dense'], dense_grads),
    }

  def base_fast_weights(params: Params, support_inputs, support_labels) -> Params:
    """W*_i for each support example: ``(support, ...)`` leaves."""

    def one(x, y):
      loss = lambda p: cross_entropy(  # noqa: E731
        base_logits(p, None, x[None], impl=impl, per_example=False), y[None]
      )
      convs, dense = _split(jax.grad(loss)(params['base']), ('dense_0', 'dense_1'))

      def m(name):
        return lambda z: mlp.apply({'params': params['m'][name]}, z)[:, 0]

      return {
        **coordinatewise(m('conv'), convs),
        **coordinatewise(m('dense'), dense),
      }

    return jax.vmap(one)(support_inputs, support_labels)

  def check_inputs(params, support_inputs, query_inputs, n_way):
    width = params['base']['dense_1'].shape[-1]
    if n_way != width:
      raise ValueError(
        f'meta_networks was built for {width}-way episodes (its heads have {width} '
        f'outputs) and cannot answer {n_way}-way ones; build and train it with '
        f'num_classes={n_way}.'
      )
    for name, x in (('support', support_inputs), ('query', query_inputs)):
      if x.ndim != 4:
        raise ValueError(
          f'meta_networks expects NHWC images; the {name} inputs have shape '
          f'{tuple(x.shape)}.'
        )

  def logits(params, support_inputs, support_labels, query_inputs, n_way: int):
    check_inputs(params, support_inputs, query_inputs, n_way)
    key_fast = key_fast_weights(params, support_inputs, support_labels)
    n = support_inputs.shape[0]
    r = keys(
      params['key'],
      key_fast,
      jnp.concatenate([support_inputs, query_inputs]),
      impl=impl,
    )
    attention = jax.nn.softmax(cosine_similarities(r[n:], r[:n]), axis=-1)
    memory = base_fast_weights(params, support_inputs, support_labels)
    fast = jax.tree.map(lambda w: jnp.tensordot(attention, w, axes=1), memory)
    return base_logits(params['base'], fast, query_inputs, impl=impl, per_example=True)

  def init(key: jax.Array, example_inputs: jax.Array) -> Params:
    if example_inputs.ndim != 4:
      raise ValueError(
        'meta_networks expects NHWC example inputs (batch, height, width, '
        f'channels); got shape {tuple(example_inputs.shape)}.'
      )
    k_base, k_key, *k_meta = jax.random.split(key, 6)
    shape = example_inputs.shape[1:]
    coords = jnp.zeros((1, 2), jnp.float32)
    carry = lstm.initialize_carry(k_base, (1, 2))
    hidden = jnp.zeros((1, meta_hidden), jnp.float32)

    def reader(k):
      k_lstm, k_out = jax.random.split(k)
      return {
        'lstm': lstm.init(k_lstm, carry, coords)['params'],
        'out': nn.Dense(1).init(k_out, hidden)['params'],
      }

    return {
      'base': _net_init(k_base, shape, filters, conv_layers, num_classes, impl),
      'key': _net_init(k_key, shape, filters, conv_layers, num_classes, impl),
      'd': {'conv': reader(k_meta[0]), 'dense': reader(k_meta[1])},
      'm': {
        'conv': mlp.init(k_meta[2], coords)['params'],
        'dense': mlp.init(k_meta[3], coords)['params'],
      },
    }

  return MetricLearner(
    'meta_networks', init, None, logits, classification_loss(logits, cross_entropy)
  )
