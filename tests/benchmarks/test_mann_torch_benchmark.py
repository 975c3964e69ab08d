"""benchmarks/mann_torch.py: its flags, its episodes and jmeta's cell (torch is not a
dependency of jmeta, so its cell runs only where the benchmark's venv has it)."""

import numpy as np
import pytest
from mann_torch import SHAPES, jmeta_cell, parse_args, random_batch


def test_bad_flags_are_refused():
  for flags in (['--batch', '0'], ['--repeats', '0'], ['--warmup', '-1']):
    with pytest.raises(SystemExit):
      parse_args(flags)
  assert parse_args([]).batch == 16


def test_each_step_shows_the_previous_label():
  inputs, labels = random_batch(3)
  n = SHAPES['classes']
  assert inputs.shape == (3, SHAPES['steps'], SHAPES['image'] + n)
  previous = inputs[..., SHAPES['image'] :]
  assert np.all(previous[:, 0] == 0)
  np.testing.assert_array_equal(previous[:, 1:].argmax(-1), labels[:, :-1])
  np.testing.assert_array_equal(previous[:, 1:].sum(-1), 1.0)


def test_jmeta_cell_times_each_update():
  out = jmeta_cell(parse_args(['--batch', '1', '--repeats', '2', '--warmup', '1']))
  assert len(out['times_s']) == 2 and min(out['times_s']) > 0
