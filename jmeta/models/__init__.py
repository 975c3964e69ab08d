"""Models: ``init`` plus a pure ``apply`` over a params pytree."""

from jmeta.models.base import (
  BATCH_NORM_MODES,
  SUPPORT,
  TRANSDUCTIVE,
  Model,
  check_model_accepts,
  population_batch_norm,
)
from jmeta.models.conv4 import (
  CONV4_VARIANTS,
  HEAD_INITS,
  conv4,
  excluding_batch_norm_offsets,
)
from jmeta.models.flax_adapters import from_linen, from_nnx
from jmeta.models.layers import BLOCK_INITS, default_conv_impl
from jmeta.models.mlp import mlp
from jmeta.models.precision import COMPUTE_DTYPES, mixed_precision

__all__ = [
  'BATCH_NORM_MODES',
  'BLOCK_INITS',
  'COMPUTE_DTYPES',
  'CONV4_VARIANTS',
  'HEAD_INITS',
  'Model',
  'SUPPORT',
  'TRANSDUCTIVE',
  'check_model_accepts',
  'conv4',
  'default_conv_impl',
  'excluding_batch_norm_offsets',
  'from_linen',
  'from_nnx',
  'mixed_precision',
  'mlp',
  'population_batch_norm',
]
