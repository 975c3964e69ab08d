"""Pure layer functions shared by the built-in models."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jmeta.models.base import (
  SUPPORT,
  TRANSDUCTIVE,
  check_batch_norm_mode,
  check_num_support,
)
from jmeta.validation import check_choice

CONV_IMPLS = ('auto', 'xla', 'patches')


def default_conv_impl(backend: str | None = None) -> str:
  """The convolution implementation jmeta uses on ``backend`` when asked for 'auto'.

  'patches' (patch extraction plus a matmul) on CPU and GPU, 'xla' elsewhere. On
  XLA:CPU, second-order MAML through Conv4 runs several times faster that way
  (``benchmarks/results/cpu_meta_step.md``). On an H100 (jax 0.11.2), vmapped over
  tasks, XLA's convolutions become grouped convolutions with one group per task:
  a MAML 5-way 1-shot meta-update took 14.1 ms with them and 2.7 ms with patches,
  41.0 against 9.3 ms at 20-way, and patches won for every gradient-based
  estimator (``benchmarks/results/gpu_meta_step.md``; an H200 agreed on MAML).
  TPUs are not measured, so they keep XLA's convolution.
  """
  backend = backend or jax.default_backend()
  return 'patches' if backend in ('cpu', 'gpu') else 'xla'


def resolve_conv_impl(impl: str) -> str:
  check_choice(impl, CONV_IMPLS, 'conv impl')
  return default_conv_impl() if impl == 'auto' else impl


def resolve_conv_impls(impl: str | Sequence[str], num_layers: int) -> tuple[str, ...]:
  """One resolved conv impl per layer of a ``num_layers``-layer network.

  ``impl`` is one name for every layer, or one per layer: a sequence, or the names
  joined by commas (``'xla,patches,patches,patches'``), the form a config flag takes.
  """
  names = impl.split(',') if isinstance(impl, str) else list(impl)
  if len(names) == 1:
    names = names * num_layers
  if len(names) != num_layers:
    raise ValueError(
      f'conv impl {impl!r} names {len(names)} layers, but the network has '
      f'{num_layers}; give one of {CONV_IMPLS} for every layer, or one per layer.'
    )
  return tuple(resolve_conv_impl(name) for name in names)


def operand_dtypes(x: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array, Any]:
  """(x, w, output dtype) for a matmul or convolution of ``x`` with weights ``w``.

  Weights below float32 (``jmeta.models.mixed_precision``) set the operand dtype and
  the products accumulate into float32, as mixed-precision hardware does; otherwise
  both operands are promoted to a common dtype, which is also the output's.
  """
  if jnp.finfo(w.dtype).bits < 32:
    return x.astype(w.dtype), w, jnp.float32
  dtype = jnp.promote_types(x.dtype, w.dtype)
  return x.astype(dtype), w.astype(dtype), dtype


def dense(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
  """x @ w + b, with ``operand_dtypes``' precision rules."""
  x, w, out = operand_dtypes(x, w)
  return jnp.matmul(x, w, preferred_element_type=out) + b


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """(low, high) padding of XLA's 'SAME' along one axis: output ceil(size / stride)."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def image_patches(x: jax.Array, kh: int, kw: int, stride: int) -> jax.Array:
  """'SAME'-padded (kh, kw) patches of NHWC ``x``, features ordered (kh, kw, cin).

  Built from ``kh * kw`` strided slices of the padded input and one concatenate,
  so its gradient is pads and adds. ``lax.conv_general_dilated_patches`` computes
  the same patches as a convolution with a one-hot kernel, which (with its
  convolution gradient) made second-order MAML on XLA:CPU about twice as slow
  (``benchmarks/results/cpu_meta_step.md``).
  """
  n, h, w, c = x.shape
  (top, bottom), (left, right) = (
    same_padding(h, kh, stride),
    same_padding(w, kw, stride),
  )
  x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  ho, wo = -(-h // stride), -(-w // stride)
  cols = [
    lax.slice(
      x,
      (0, i, j, 0),
      (n, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1, c),
      (1, stride, stride, 1),
    )
    for i in range(kh)
    for j in range(kw)
  ]
  return jnp.concatenate(cols, axis=-1)


def conv2d(
  x: jax.Array, w: jax.Array, b: jax.Array, *, stride: int, impl: str = 'xla'
) -> jax.Array:
  """'SAME'-padded 2-D convolution, NHWC inputs and HWIO weights.

  ``impl='patches'`` extracts the (kh, kw, cin) patches (``image_patches``) and
  contracts them with one matmul; it computes the same function as ``impl='xla'``
  (``lax.conv_general_dilated``).
  """
  kh, kw, cin, cout = w.shape
  x, w, out = operand_dtypes(x, w)
  if impl == 'xla':
    y = lax.conv_general_dilated(
      x,
      w,
      (stride, stride),
      'SAME',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      preferred_element_type=out,
    )
  elif impl == 'patches':
    patches = image_patches(x, kh, kw, stride)
    # HWIO flattens to the patches' (kh, kw, cin) feature order.
    w_mat = w.reshape(kh * kw * cin, cout)
    y = jnp.einsum('nhwk,kc->nhwc', patches, w_mat, preferred_element_type=out)
  else:
    raise ValueError(f'unknown conv impl {impl!r}; expected "xla" or "patches".')
  return y + b


def batch_norm(
  x: jax.Array,
  scale: jax.Array | None,
  bias: jax.Array,
  *,
  mode: str = TRANSDUCTIVE,
  num_support: int | None = None,
  eps: float = 1e-5,
) -> jax.Array:
  """Batch norm over every axis but the last, with statistics chosen by ``mode``.

  y = scale * (x - mean_S(x)) / sqrt(var_S(x) + eps) + bias (Ioffe & Szegedy, 2015)
  where S is the whole batch for ``transductive`` (as in MAML) and the first
  ``num_support`` examples for ``support``. ``scale=None`` leaves it out (scale 1),
  as ``tf.contrib.layers.batch_norm``'s default in MAML's reference code does.
  """
  check_batch_norm_mode(mode)
  check_num_support(mode, num_support, x.shape[0])
  # Statistics and normalisation in at least float32, so bfloat16 compute (see
  # jmeta.models.mixed_precision) keeps accurate means and variances.
  dtype = x.dtype
  x = x.astype(jnp.promote_types(dtype, jnp.float32))
  stats = x[:num_support] if mode == SUPPORT else x
  axes = tuple(range(x.ndim - 1))
  mean = jnp.mean(stats, axis=axes)
  var = jnp.mean(jnp.square(stats - mean), axis=axes)
  y = (x - mean) * lax.rsqrt(var + eps)
  if scale is not None:
    y = y * scale
  return (y + bias).astype(dtype)


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max-pooling with stride 2 and 'VALID' padding (NHWC).

  Written as a crop, a reshape and a max, the same function as
  ``lax.reduce_window``; its gradient avoids XLA:CPU's slow select-and-scatter.
  """
  n, h, w, c = x.shape
  x = x[:, : h // 2 * 2, : w // 2 * 2]
  return jnp.max(x.reshape(n, h // 2, 2, w // 2, 2, c), axis=(2, 4))


def dense_init(key: jax.Array, fan_in: int, fan_out: int) -> dict[str, jax.Array]:
  """Glorot-uniform weights and zero biases, as MAML initialises its layers."""
  w = jax.nn.initializers.glorot_uniform()(key, (fan_in, fan_out), jnp.float32)
  return {'w': w, 'b': jnp.zeros((fan_out,), jnp.float32)}


def init_layers(
  keys: jax.Array,
  fan_in: int,
  sizes: Sequence[int],
  layer_init: Callable[[jax.Array, int, int], dict[str, jax.Array]],
  name: str,
) -> dict[str, dict[str, jax.Array]]:
  """``{f'{name}_{i}': layer_init(keys[i], fan_in_i, sizes[i])}``, a chain of layers:
  each layer's fan-in is the previous one's size, the first's ``fan_in``."""
  params = {}
  for i, (k, fan_out) in enumerate(zip(keys, sizes)):
    params[f'{name}_{i}'] = layer_init(k, fan_in, fan_out)
    fan_in = fan_out
  return params


BLOCK_INITS = ('glorot_uniform', 'torch_2017')


def conv_block_init(
  key: jax.Array,
  cin: int,
  cout: int,
  *,
  scale: bool = True,
  init: str = 'glorot_uniform',
) -> dict[str, jax.Array]:
  """A 3x3 conv block's params, ``w``, ``b``, batch-norm ``scale`` (unless
  ``scale=False``) and offset ``bias``, drawn by ``init``:

  * ``'glorot_uniform'``: Glorot-uniform ``w``, zero ``b``, unit ``scale``;
  * ``'torch_2017'``: PyTorch's defaults before 1.0, which the 2017 reference codes
    (e.g. Prototypical Networks') were initialised with: ``w`` and ``b`` from
    U(-1/sqrt(9 cin), 1/sqrt(9 cin)) and ``scale`` from U(0, 1) (changed to ones in
    pytorch/pytorch#12325, October 2018).

  The batch-norm offset ``bias`` starts at zero in both.
  """
  shape = (3, 3, cin, cout)
  if init == 'glorot_uniform':
    w = jax.nn.initializers.glorot_uniform()(key, shape, jnp.float32)
    b, gamma = jnp.zeros((cout,), jnp.float32), jnp.ones((cout,), jnp.float32)
  elif init == 'torch_2017':
    k_w, k_b, k_scale = jax.random.split(key, 3)
    bound = 1.0 / math.sqrt(9 * cin)
    w = jax.random.uniform(k_w, shape, jnp.float32, -bound, bound)
    b = jax.random.uniform(k_b, (cout,), jnp.float32, -bound, bound)
    gamma = jax.random.uniform(k_scale, (cout,), jnp.float32)
  else:
    raise ValueError(f'unknown block init {init!r}; expected one of {BLOCK_INITS}.')
  params = {'w': w, 'b': b, 'scale': gamma, 'bias': jnp.zeros((cout,), jnp.float32)}
  if not scale:
    del params['scale']
  return params


def norm_relu_pool(
  p: dict,
  x: jax.Array,
  *,
  mode: str,
  num_support: int | None,
  pool: bool,
  eps: float = 1e-5,
) -> jax.Array:
  """ReLU of ``batch_norm`` with ``p``'s scale (if it has one) and bias, then 2x2
  max-pooling if ``pool``: a conv block after its convolution."""
  x = jax.nn.relu(
    batch_norm(
      x, p.get('scale'), p['bias'], mode=mode, num_support=num_support, eps=eps
    )
  )
  return max_pool_2x2(x) if pool else x


def conv_block(
  p: dict,
  x: jax.Array,
  *,
  stride: int,
  impl: str,
  mode: str,
  num_support: int | None,
  pool: bool,
  eps: float = 1e-5,
) -> jax.Array:
  """[3x3 'SAME' conv, batch norm, ReLU], then 2x2 max-pooling if ``pool``."""
  x = conv2d(x, p['w'], p['b'], stride=stride, impl=impl)
  return norm_relu_pool(p, x, mode=mode, num_support=num_support, pool=pool, eps=eps)
