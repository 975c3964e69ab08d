"""Memory-augmented meta-learners: NTM addressing, LRUA memory and recurrent models.

* ``jmeta.memory.addressing``: the Neural Turing Machine's content and location
  addressing, reading and writing (Graves et al., 2014).
"""

from jmeta.memory import addressing
from jmeta.memory.addressing import (
  address,
  content_weights,
  cosine_similarity,
  interpolate,
  read,
  sharpen,
  shift,
  write,
  write_heads,
)

__all__ = [
  'address',
  'addressing',
  'content_weights',
  'cosine_similarity',
  'interpolate',
  'read',
  'sharpen',
  'shift',
  'write',
  'write_heads',
]
