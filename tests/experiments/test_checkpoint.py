"""Checkpoints of a state class or a config that later gained fields still resume."""

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import runs
from experiments.common.checkpoint import (
  CheckpointConfigMismatchError,
  Checkpointer,
  check_compatible,
  with_added_fields,
)


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


def test_a_field_added_since_the_checkpoint_matches_only_at_its_old_value():
  saved = {'model': {'filters': 64}, 'seed': 0}
  added = {'model.head_init': 'glorot_uniform', 'inner_adapts': 'all'}
  current = {
    'model': {'filters': 64, 'head_init': 'glorot_uniform'},
    'seed': 0,
    'inner_adapts': 'all',
  }
  check_compatible(saved, current, (), added)
  with pytest.raises(CheckpointConfigMismatchError, match='model.head_init'):
    check_compatible(saved, current, ())  # not declared as added
  changed = {**current, 'model': {'filters': 64, 'head_init': 'normal'}}
  with pytest.raises(CheckpointConfigMismatchError, match="config has 'normal'"):
    check_compatible(saved, changed, (), added)
  # A field the saved config has is compared as always.
  with pytest.raises(CheckpointConfigMismatchError, match='inner_adapts'):
    check_compatible(
      {**saved, 'inner_adapts': 'all_but_batch_norm_offsets'}, current, (), added
    )


@pytest.mark.parametrize('registered, kept', [(False, [3, 4]), (True, [4])])
def test_a_registered_workdir_keeps_only_its_latest_checkpoint(
  tmp_path, registered, kept
):
  # Every runner (MANN, learned optimizers, meta-RL and RL^2 included) gets this by
  # default, so a registered run carries one checkpoint in git.
  if registered:
    (tmp_path / runs.RUN_FILE).write_text('{}')
  saver = Checkpointer(tmp_path, {'a': 1})
  for step in range(1, 5):
    saver.save(step, {'w': jnp.full(2, float(step))})
  saver.close()
  assert sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir()) == kept


def test_added_fields_fill_only_what_a_recorded_config_lacks():
  recorded = {'model': {'filters': 64}, 'seed': 0, 'eval': {'k': 1}}
  added = {'model.head_init': 'glorot_uniform', 'a.b.c': 3, 'eval.k': 5}
  filled = with_added_fields(recorded, added)
  assert filled == {
    'model': {'filters': 64, 'head_init': 'glorot_uniform'},
    'seed': 0,
    'eval': {'k': 1},  # the run's own value is kept
    'a': {'b': {'c': 3}},
  }
  assert recorded == {'model': {'filters': 64}, 'seed': 0, 'eval': {'k': 1}}
  check_compatible(recorded, filled, (), added)  # what a resume accepts
