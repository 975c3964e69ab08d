"""Relation networks (Sung et al., 2018, "Learning to Compare").

Feature-map sizes on 28x28x1 Omniglot with the defaults (every convolution 'SAME',
max-pooling 2x2 'VALID', so odd sizes are floored):

  encoder f   28x28x1 -> block 1 + pool -> 14x14x64 -> block 2 + pool -> 7x7x64
              -> block 3 -> 7x7x64 -> block 4 -> 7x7x64 (no flatten)
  pair        concat(class feature, query feature) -> 7x7x128
  relation g  block 1 + pool -> 3x3x64 -> block 2 + pool -> 1x1x64
              -> FC 64 -> hidden (ReLU) -> FC hidden -> 1 (sigmoid)

The paper's code pads the first two encoder convolutions with 0 ('VALID', a 5x5x64
map: 28 -> 26 -> 13 -> 11 -> 5 -> 5 -> 5) and the relation convolutions with 1
(5 -> 2 -> 1). jmeta's convolutions are 'SAME', giving a 7x7 map; 'VALID' relation
convolutions could not reduce it (7 -> 5 -> 2 -> 0), while 'SAME' ones with floored
pooling give 7 -> 3 -> 1, so the relation FC layer sees 64 features as in the
paper (its H = 64 for Omniglot).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jmeta.metric.base import MetricLearner, classification_loss, embed_episode
from jmeta.models.base import (
  SUPPORT,
  TRANSDUCTIVE,
  Model,
  batch_norm_apply,
  check_batch_norm_mode,
)
from jmeta.models.layers import (
  CONV_IMPLS,
  conv2d,
  conv_block,
  conv_block_init,
  dense_init,
  init_layers,
  norm_relu_pool,
  resolve_conv_impl,
)
from jmeta.validation import check_choice, check_positive_int

# The encoder pools after its first two of four blocks only (Sung et al., 2018).
ENCODER_POOLED_BLOCKS = (True, True, False, False)


def _check_conv_impl(conv_impl: str) -> str:
  check_choice(conv_impl, CONV_IMPLS, 'conv_impl')
  return resolve_conv_impl(conv_impl)


def _check_images(example_inputs: jax.Array, what: str) -> None:
  if example_inputs.ndim != 4:
    raise ValueError(
      f'{what} expects NHWC inputs (batch, height, width, channels); got '
      f'example inputs of shape {tuple(example_inputs.shape)}.'
    )


def relation_encoder(*, filters: int = 64, conv_impl: str = 'auto') -> Model:
  """The embedding f of relation networks on Omniglot (Sung et al., 2018).

  Four blocks of [3x3 conv (``filters``), batch norm, ReLU] with 2x2 max-pooling
  after the first two only; 'SAME' padding, so 28x28x1 images give 7x7x``filters``
  feature maps (NHWC, not flattened).
  """
  check_positive_int(filters, 'filters')
  impl = _check_conv_impl(conv_impl)

  def init(key: jax.Array, example_inputs: jax.Array) -> dict:
    _check_images(example_inputs, 'relation_encoder')
    blocks = len(ENCODER_POOLED_BLOCKS)
    keys = jax.random.split(key, blocks)
    cin = example_inputs.shape[-1]
    return init_layers(keys, cin, (filters,) * blocks, conv_block_init, 'block')

  def forward(
    params: dict, x: jax.Array, mode: str, num_support: int | None
  ) -> jax.Array:
    for i, pool in enumerate(ENCODER_POOLED_BLOCKS):
      x = conv_block(
        params[f'block_{i}'],
        x,
        stride=1,
        impl=impl,
        mode=mode,
        num_support=num_support,
        pool=pool,
      )
    return x

  return Model(init, batch_norm_apply(forward))


def relation_module(
  *, filters: int = 64, hidden: int = 8, conv_impl: str = 'auto'
) -> Model:
  """The relation module g: a (pairs, H, W, 2C) batch of concatenated feature pairs
  to (pairs,) relation scores in [0, 1].

  r = sigmoid(FC_1(relu(FC_hidden(flatten(B_2(B_1(pair))))))) with B_i = [3x3 conv
  (``filters``), batch norm, ReLU, 2x2 max-pool] (Sung et al., 2018). The first FC
  layer's width is read from ``example_pairs`` in ``init``.
  """
  check_positive_int(filters, 'filters')
  check_positive_int(hidden, 'hidden')
  impl = _check_conv_impl(conv_impl)

  def features(params, x, mode, num_support=None):
    x = conv2d(x, params['block_0']['w'], params['block_0']['b'], stride=1, impl=impl)
    return _features_after_first_conv(params, x, impl, mode, num_support)

  def init(key: jax.Array, example_pairs: jax.Array) -> dict:
    _check_images(example_pairs, 'relation_module')
    keys = jax.random.split(key, 4)
    params = {
      'block_0': conv_block_init(keys[0], example_pairs.shape[-1], filters),
      'block_1': conv_block_init(keys[1], filters, filters),
    }
    one = jax.ShapeDtypeStruct((1,) + tuple(example_pairs.shape[1:]), jnp.float32)
    dim = jax.eval_shape(lambda p, x: features(p, x, TRANSDUCTIVE), params, one)
    if dim.shape[-1] == 0:
      raise ValueError(
        f'relation_module: feature pairs of spatial size '
        f'{tuple(example_pairs.shape[1:3])} vanish under two 2x2 max-pools; the '
        'encoder feature maps must be at least 4x4.'
      )
    params['hidden'] = dense_init(keys[2], dim.shape[-1], hidden)
    params['out'] = dense_init(keys[3], hidden, 1)
    return params

  def forward(
    params: dict, inputs: jax.Array, mode: str, num_support: int | None
  ) -> jax.Array:
    return _scores(params, features(params, inputs, mode, num_support))

  return Model(init, batch_norm_apply(forward))


def _features_after_first_conv(params, x, impl, mode, num_support):
  """g's features from the output of its first convolution on.

  ``x`` is conv_0(pair) + b_0; both ``relation_module`` and the factored
  ``relation_scores`` (which forms it without building pairs) continue here.
  """
  x = norm_relu_pool(
    params['block_0'], x, mode=mode, num_support=num_support, pool=True
  )
  x = conv_block(
    params['block_1'],
    x,
    stride=1,
    impl=impl,
    mode=mode,
    num_support=num_support,
    pool=True,
  )
  return x.reshape(x.shape[0], -1)


def _scores(params, x):
  x = jax.nn.relu(x @ params['hidden']['w'] + params['hidden']['b'])
  return jax.nn.sigmoid(x @ params['out']['w'] + params['out']['b'])[:, 0]


def paired_first_conv(
  p: dict, feature_maps: jax.Array, classes: jax.Array, impl: str
) -> jax.Array:
  """conv_0(relation_pairs(feature_maps, classes)) + b_0, without forming pairs.

  A convolution is linear in its input channels, so with W = [W_c | W_x] split
  along them, conv(concat(c_k, f_i); W) = conv(c_k; W_c) + conv(f_i; W_x): m + n
  convolutions and a broadcast sum instead of m * n convolutions of 2C channels.
  Pair ``i * n + k`` as in ``relation_pairs``.
  """
  c = classes.shape[-1]
  zero = jnp.zeros_like(p['b'])
  by_class = conv2d(classes, p['w'][:, :, :c], zero, stride=1, impl=impl)
  by_example = conv2d(feature_maps, p['w'][:, :, c:], p['b'], stride=1, impl=impl)
  out = by_example[:, None] + by_class[None]
  return out.reshape((-1,) + out.shape[2:])


def relation_scores(
  params: dict,
  feature_maps: jax.Array,
  classes: jax.Array,
  *,
  conv_impl: str = 'auto',
  batch_norm: str = TRANSDUCTIVE,
  num_support: int | None = None,
) -> jax.Array:
  """``relation_module(...).apply(params, relation_pairs(feature_maps, classes))``,
  computed with ``paired_first_conv`` (the same function, up to rounding, at a
  fraction of the cost of g's first convolution)."""
  impl = _check_conv_impl(conv_impl)
  x = paired_first_conv(params['block_0'], feature_maps, classes, impl)
  return _scores(
    params, _features_after_first_conv(params, x, impl, batch_norm, num_support)
  )


def class_features(feature_maps: jax.Array, labels: jax.Array, n_way: int) -> jax.Array:
  """Per-class sum of ``feature_maps`` (examples, ...): shape ``(n_way, ...)``.

  c_k = sum_i [y_i = k] f(x_i), the K-shot class feature of Sung et al. (2018).
  A one-hot matmul rather than ``class_means * counts``, so no division rounds it.
  """
  one_hot = jax.nn.one_hot(labels, n_way, dtype=feature_maps.dtype)
  flat = feature_maps.reshape(feature_maps.shape[0], -1)
  return (one_hot.T @ flat).reshape((n_way,) + feature_maps.shape[1:])


def relation_pairs(feature_maps: jax.Array, classes: jax.Array) -> jax.Array:
  """All (example, class) pairs as concat(class feature, example feature) along
  channels: ``(m, H, W, C)`` and ``(n, H, W, C)`` give ``(m * n, H, W, 2C)``, with
  pair ``i * n + k`` for example ``i`` and class ``k``."""
  m, n = feature_maps.shape[0], classes.shape[0]
  shape = (m, n) + feature_maps.shape[1:]
  left = jnp.broadcast_to(classes[None], shape)
  right = jnp.broadcast_to(feature_maps[:, None], shape)
  pairs = jnp.concatenate([left, right], axis=-1)
  return pairs.reshape((m * n,) + pairs.shape[2:])


def mse_to_one_hot(scores: jax.Array, labels: jax.Array) -> jax.Array:
  """mean_{q, k} (r_qk - [y_q = k])^2, the loss of Sung et al. (2018)."""
  target = jax.nn.one_hot(labels, scores.shape[-1], dtype=scores.dtype)
  return jnp.mean(jnp.square(scores - target))


def relation_network(
  *,
  filters: int = 64,
  hidden: int = 8,
  conv_impl: str = 'auto',
  batch_norm: str = SUPPORT,
  encoder: Model | None = None,
) -> MetricLearner:
  """Relation networks (Sung et al., 2018): a learned comparison of feature maps.

  r_qk = g(concat(c_k, f(x_q))) in [0, 1] with c_k = sum_{i: y_i = k} f(x_i) the
  sum of class k's support feature maps; the arg-max over k is the prediction and
  the loss is mean_{q, k} (r_qk - [y_q = k])^2. f is ``relation_encoder(filters=
  filters)`` unless ``encoder`` (any ``Model`` returning NHWC feature maps) is
  given; g is ``relation_module(filters=filters, hidden=hidden)``. ``logits``
  returns the scores r themselves.

  Batch norm, in both f and g, follows ``batch_norm``:
    * ``'support'``: f normalises with support statistics (``embed_episode``); g
      takes its statistics from the (support example, class) pairs, each support
      feature map paired with every class feature, and normalises the (query,
      class) pairs with them. So no query affects another query's scores.
    * ``'transductive'``: f normalises support and queries together; g normalises
      with the statistics of all (query, class) pairs of the call.

  ``params`` is ``{'encoder': ..., 'relation': ...}``.
  """
  check_positive_int(filters, 'filters')
  check_positive_int(hidden, 'hidden')
  _check_conv_impl(conv_impl)
  check_batch_norm_mode(batch_norm)
  if encoder is None:
    encoder = relation_encoder(filters=filters, conv_impl=conv_impl)
  elif not (
    callable(getattr(encoder, 'init', None))
    and callable(getattr(encoder, 'apply', None))
  ):
    raise ValueError(
      'encoder must be a jmeta.Model (init, apply) or None, got '
      f'{type(encoder).__name__}.'
    )
  relation = relation_module(filters=filters, hidden=hidden, conv_impl=conv_impl)
  embed_params = embed_episode(encoder, batch_norm)

  def embed(params, support_inputs, query_inputs):
    return embed_params(params['encoder'], support_inputs, query_inputs)

  def logits(params, support_inputs, support_labels, query_inputs, n_way: int):
    support, query = embed(params, support_inputs, query_inputs)
    classes = class_features(support, support_labels, n_way)
    # g on every (query, class) pair, its first convolution factored
    # (paired_first_conv) rather than run on m * n concatenated pairs.
    if batch_norm == SUPPORT:
      # Support pairs go first and alone supply g's statistics; their scores are
      # dropped.
      maps = jnp.concatenate([support, query])
      n = support.shape[0] * n_way
      scores = relation_scores(
        params['relation'],
        maps,
        classes,
        conv_impl=conv_impl,
        batch_norm=SUPPORT,
        num_support=n,
      )[n:]
    else:
      scores = relation_scores(
        params['relation'], query, classes, conv_impl=conv_impl, batch_norm=TRANSDUCTIVE
      )
    return scores.reshape(query.shape[0], n_way)

  def init(key: jax.Array, example_inputs: jax.Array) -> dict:
    encoder_key, relation_key = jax.random.split(key)
    encoder_params = encoder.init(encoder_key, example_inputs)
    maps = jax.eval_shape(
      lambda p, x: encoder.apply(p, x), encoder_params, example_inputs
    )
    if len(maps.shape) != 4:
      raise ValueError(
        'relation_network needs an encoder returning NHWC feature maps (batch, '
        f'height, width, channels); it returned shape {maps.shape} for inputs of '
        f'shape {tuple(example_inputs.shape)}.'
      )
    pair_shape = (1,) + maps.shape[1:3] + (2 * maps.shape[3],)
    return {
      'encoder': encoder_params,
      'relation': relation.init(relation_key, jnp.zeros(pair_shape, maps.dtype)),
    }

  return MetricLearner(
    'relation', init, embed, logits, classification_loss(logits, mse_to_one_hot)
  )
