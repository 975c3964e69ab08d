"""Memory-augmented meta-learners: NTM addressing, LRUA memory and recurrent models.

* ``jmeta.memory.addressing``: the Neural Turing Machine's content and location
  addressing, reading and writing (Graves et al., 2014).
* ``lrua``: the Least Recently Used Access memory (Santoro et al., 2016);
  ``ntm_access``: the NTM's memory with read and write heads.
"""

from jmeta.memory import addressing
from jmeta.memory.access import MemoryAccess
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
from jmeta.memory.lrua import (
  LRUAState,
  least_used_weights,
  lrua,
  lrua_write_weights,
  zero_least_used,
)
from jmeta.memory.ntm_access import NTMHeads, NTMState, address_heads, ntm_access

__all__ = [
  'LRUAState',
  'MemoryAccess',
  'NTMHeads',
  'NTMState',
  'address',
  'address_heads',
  'addressing',
  'content_weights',
  'cosine_similarity',
  'interpolate',
  'least_used_weights',
  'lrua',
  'lrua_write_weights',
  'ntm_access',
  'read',
  'sharpen',
  'shift',
  'write',
  'write_heads',
  'zero_least_used',
]
