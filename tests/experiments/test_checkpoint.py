"""Checkpoints of a state class that later gained fields still restore."""

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from experiments.common.checkpoint import Checkpointer


class OldState(NamedTuple):
  step: jnp.ndarray
  params: dict


class NewState(NamedTuple):
  step: jnp.ndarray
  params: dict
  flag: jnp.ndarray


def test_a_state_saved_before_a_field_was_appended_restores_into_the_rest(tmp_path):
  old = OldState(jnp.int32(7), {'w': jnp.arange(3.0)})
  saver = Checkpointer(tmp_path, {'a': 1})
  saver.save(7, old)
  saver.close()

  template = NewState(jnp.int32(0), {'w': jnp.zeros(3)}, jnp.full((), -1, jnp.int32))
  loader = Checkpointer(tmp_path, {'a': 1})
  restored = loader.restore(template)
  loader.close()
  assert isinstance(restored, NewState)
  assert int(restored.step) == 7
  np.testing.assert_array_equal(restored.params['w'], np.arange(3.0))
  assert int(restored.flag) == -1  # the appended field keeps the template's value
