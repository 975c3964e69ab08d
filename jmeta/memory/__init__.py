"""Memory-augmented meta-learners: NTM addressing, LRUA memory and recurrent models.

Pure, ``lax.scan``-able pieces in the shape of optax: states are NamedTuples and
factories return NamedTuples of pure functions.

* ``jmeta.memory.addressing``: the Neural Turing Machine's content and location
  addressing, reading and writing (Graves et al., 2014).
* ``lrua``: the Least Recently Used Access memory (Santoro et al., 2016);
  ``ntm_access``: the NTM's memory with read and write heads.
* ``mann``, ``ntm`` and ``lstm``: LSTM-controlled models whose ``apply`` runs an
  episode as one ``lax.scan``; ``with_previous_labels`` builds the one-shot inputs
  ``[x_t, one_hot(y_{t-1})]``.

Example::

  model = jmeta.memory.mann(5, memory_slots=128, memory_width=40)
  inputs = jmeta.memory.with_previous_labels(images, labels, 5)  # (time, features)
  params = model.init(jax.random.key(0), inputs)
  logits = jax.vmap(model.apply, (None, 0))(params, batch_of_inputs)
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
from jmeta.memory.models import (
  MemoryModel,
  MemoryModelState,
  lstm,
  mann,
  ntm,
  recurrent_model,
  with_previous_labels,
)
from jmeta.memory.ntm_access import NTMHeads, NTMState, address_heads, ntm_access

__all__ = [
  'LRUAState',
  'MemoryAccess',
  'MemoryModel',
  'MemoryModelState',
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
  'lstm',
  'mann',
  'ntm',
  'ntm_access',
  'read',
  'recurrent_model',
  'sharpen',
  'shift',
  'with_previous_labels',
  'write',
  'write_heads',
  'zero_least_used',
]
