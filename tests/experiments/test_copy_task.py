"""The copy task: its sequences, its cost in bits, a smoke run and a tiny learning run."""

import json
import math
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from run_checks import assert_log_names_commit, log_to

from experiments.copy_task import plot, probe, report, sequences, train
from experiments.copy_task.configs import lstm, ntm, smoke


def test_sequences_frame_the_vectors_and_targets_repeat_them_after_the_delimiter():
  bits, max_length = 4, 6
  batch = sequences.sample_batch(jax.random.key(0), 32, 1, max_length, bits)
  steps = sequences.time_steps(max_length)
  assert steps == 14
  assert batch.inputs.shape == (32, steps, bits + 2)
  assert batch.targets.shape == (32, steps, bits)
  assert batch.mask.shape == (32, steps)
  lengths = np.asarray(batch.lengths)
  assert lengths.min() >= 1 and lengths.max() <= max_length
  assert len(set(lengths)) > 1  # a batch mixes lengths
  for inputs, targets, mask, n in zip(
    *(np.asarray(x) for x in batch[:3]), lengths, strict=True
  ):
    start, end = inputs[:, bits], inputs[:, bits + 1]
    np.testing.assert_array_equal(np.flatnonzero(start), [0])
    np.testing.assert_array_equal(np.flatnonzero(end), [n + 1])
    vectors = inputs[1 : n + 1, :bits]
    assert set(np.unique(vectors)) <= {0.0, 1.0}
    # No data outside the input phase: blank while the model answers, and padding.
    assert not inputs[n + 1 :, :bits].any() and not inputs[0, :bits].any()
    np.testing.assert_array_equal(targets[n + 2 : 2 * n + 2], vectors)
    assert not targets[: n + 2].any() and not targets[2 * n + 2 :].any()
    np.testing.assert_array_equal(np.flatnonzero(mask), np.arange(n + 2, 2 * n + 2))
    assert not inputs[2 * n + 2 :].any()


def test_bits_are_fair_coins_and_lengths_cover_the_range():
  batch = sequences.sample_batch(jax.random.key(1), 2000, 1, 20, 8)
  assert set(np.unique(batch.lengths)) == set(range(1, 21))
  shown = np.asarray(batch.inputs[:, 1:21, :8])[np.asarray(batch.mask[:, 22:]) > 0]
  assert abs(shown.mean() - 0.5) < 0.01


def test_padding_a_sequence_leaves_its_cost_unchanged():
  model = train.make_model(smoke.get_config())
  params = model.init(jax.random.key(0), jnp.zeros((1, 10)))
  batch = sequences.sample_batch(jax.random.key(2), 3, 3, 3, 8)
  padded = sequences.pad_batch(batch, 7)
  assert padded.inputs.shape[1] == sequences.time_steps(7)
  costs = [train.batch_costs(model, params, b)['cost_bits'] for b in (batch, padded)]
  np.testing.assert_allclose(costs[0], costs[1], rtol=1e-6)


def test_cost_in_bits_and_bit_errors_by_hand():
  # One sequence, 3 steps of 2 bits; only steps 1 and 2 are in the output phase.
  logits = jnp.array([[[5.0, -5.0], [0.0, math.log(3)], [math.log(3), -1.0]]])
  targets = jnp.array([[[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]])
  mask = jnp.array([[0.0, 1.0, 1.0]])
  # sigmoid(0) = 1/2: 1 bit; sigmoid(log 3) = 3/4: -log2(3/4) for a 1, log2(4) = 2
  # for a 0; sigmoid(-1) for a 0: -log2(1 - sigmoid(-1)) = log2(1 + e^-1).
  expected = 1 + math.log2(4 / 3) + 2 + math.log2(1 + math.exp(-1))
  np.testing.assert_allclose(
    sequences.cost_in_bits(logits, targets, mask), [expected], rtol=1e-6
  )
  # Thresholded at 1/2 (logit 0 counts as 0): step 1 gets bit 0 wrong, step 2
  # bit 0; step 0 is masked.
  np.testing.assert_array_equal(sequences.bit_errors(logits, targets, mask), [2])


@pytest.mark.parametrize(
  'args, match',
  [
    ((4, 0, 5, 8), 'min_length must be a positive int'),
    ((4, 1, 0, 8), 'max_length must be a positive int'),
    ((4, 6, 5, 8), 'min_length=6 exceeds max_length=5'),
    ((4, 1, 5, 0), 'bits must be a positive int'),
    ((0, 1, 5, 8), 'batch_size must be a positive int'),
    ((4, 1.5, 5, 8), 'min_length must be a positive int'),
  ],
)
def test_bad_sequence_arguments_raise(args, match):
  with pytest.raises(ValueError, match=match):
    sequences.sample_batch(jax.random.key(0), *args)


def test_bad_configs_are_named(tmp_path):
  config = smoke.get_config()
  config.model = 'gru'
  with pytest.raises(ValueError, match="config.model must be one of .* got 'gru'"):
    train.train_and_evaluate(config, str(tmp_path))
  config = smoke.get_config()
  config.bits = 0
  with pytest.raises(ValueError, match='config.bits must be a positive int'):
    train.train_and_evaluate(config, str(tmp_path))
  config = smoke.get_config()
  config.eval.lengths = (5, 0)
  with pytest.raises(ValueError, match='config.eval.lengths'):
    train.train_and_evaluate(config, str(tmp_path))
  assert not any(tmp_path.iterdir())


def test_paper_configs():
  config = ntm.get_config()
  assert (config.ntm.memory_slots, config.ntm.memory_width) == (128, 20)
  assert config.ntm.controller_size == 100 and config.learning_rate == 1e-4
  assert (config.min_length, config.max_length, config.bits) == (1, 20, 8)
  baseline = lstm.get_config()
  assert baseline.model == 'lstm' and 'ntm' not in baseline
  assert baseline.lstm.controller_size == 256 and baseline.learning_rate == 3e-5


def test_smoke_run_writes_every_output(tmp_path):
  config = smoke.get_config()
  with log_to(tmp_path / 'log.txt'):
    results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  for name in train.OUTPUTS:
    assert (tmp_path / 'run' / name).stat().st_size > 0, name
  saved = json.loads((tmp_path / 'run' / 'results.json').read_text())
  assert_log_names_commit(tmp_path / 'log.txt', saved['run']['git_commit'])
  assert saved['run']['command'] and saved['parameters'] == results['parameters']
  assert saved['eval']['lengths'] == list(config.eval.lengths)
  assert np.all(np.isfinite(saved['eval']['cost_bits_mean']))
  records = [json.loads(line) for line in (tmp_path / 'run' / 'metrics.jsonl').open()]
  assert [r['step'] for r in records] == [5, 10]
  assert records[-1]['sequences'] == 10 * config.batch_size
  with pytest.raises(FileExistsError, match='does not overwrite'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  result_file = tmp_path / 'run' / 'results.json'
  plot.plot_runs(tmp_path / 'both.png', [result_file, result_file])
  assert (tmp_path / 'both.png').stat().st_size > 0


def test_a_small_ntm_learns_a_tiny_copy_task():
  config = smoke.get_config()
  config.bits, config.min_length, config.max_length = 4, 1, 3
  config.ntm.memory_slots, config.ntm.memory_width = 8, 6
  config.batch_size, config.learning_rate = 8, 3e-3
  model = train.make_model(config)
  params = model.init(jax.random.key(0), jnp.zeros((1, config.bits + 2)))
  optimizer = train.make_optimizer(config)
  step = train.make_train_step(model, optimizer, config)
  state = optimizer.init(params)
  costs = []
  for i in range(300):
    params, state, metrics = step(params, state, jax.random.key(i))
    costs.append(float(metrics['cost_bits']))
  first, last = np.mean(costs[:30]), np.mean(costs[-30:])
  # Chance is 1 bit per target bit: 4 bits x 2 vectors on average = 8 bits.
  assert first > 6, first
  assert last < 0.5 * first, (first, last)


def test_readme_copy_task_table_and_prose_match_the_committed_runs():
  root = pathlib.Path(__file__).parents[2]
  readme = (root / 'README.md').read_text()
  begin = (
    '<!-- generated by `python -m experiments.copy_task.report results/copy_task`; '
    'do not edit by hand -->\n'
  )
  section = readme.split(begin, 1)[1].split('<!-- end generated copy_task -->', 1)[0]
  assert section == report.table(root / 'results' / 'copy_task')
  runs = {
    m: json.loads((root / 'results' / 'copy_task' / m / 'results.json').read_text())
    for m in ('ntm', 'lstm')
  }
  ev = runs['ntm']['eval']
  exact = [n for n, e in zip(ev['lengths'], ev['bit_errors_mean']) if e == 0]
  first_wrong = next(n for n, e in zip(ev['lengths'], ev['bit_errors_mean']) if e > 0)
  assert exact == [n for n in ev['lengths'] if n < first_wrong]
  text = ' '.join(readme.split())
  assert f'copies every bit of sequences up to length {max(exact)},' in text
  assert f'fails from length {first_wrong} on' in text
  lstm = dict(
    zip(runs['lstm']['eval']['lengths'], runs['lstm']['eval']['bit_errors_mean'])
  )
  ten, twenty = re.search(
    r'baseline gets ([\d.]+) bits of a length-10 sequence wrong on average but '
    r'([\d.]+) of a length-20 one',
    text,
  ).groups()
  assert (ten, twenty) == (f'{lstm[10]:.1f}', f'{lstm[20]:.1f}')


def test_a_finished_run_loads_and_the_probe_splits_its_errors(tmp_path):
  config = smoke.get_config()
  saved = train.train_and_evaluate(config, str(tmp_path / 'run'))
  loaded_config, model, params = train.load_trained(tmp_path / 'run')
  assert json.loads(loaded_config.to_json()) == json.loads(config.to_json())
  # The loaded params are the trained ones: they repeat the run's evaluation.
  assert train.evaluate(loaded_config, model, params) == saved['eval']
  rows = probe.jump_statistics(config, model, params, (3, 5), 6, seed=0)
  for row in rows:
    length = row['length']
    batch = sequences.sample_batch(
      jax.random.fold_in(jax.random.key(0), length), 6, length, length, config.bits
    )
    wrong = np.asarray(train.batch_costs(model, params, batch)['bit_errors'])
    hits = round(row['jump_hits'] * 6)
    split = (row['wrong_bits_when_hit'] or 0) * hits + (
      row['wrong_bits_when_missed'] or 0
    ) * (6 - hits)
    np.testing.assert_allclose(split, wrong.sum(), rtol=1e-6)
    assert 0 <= row['weight_on_first_slot'] <= 1
  with pytest.raises(ValueError, match="model is 'lstm'"):
    probe.jump_statistics(lstm.get_config(), model, params, (3,), 2, seed=0)
  with pytest.raises(FileNotFoundError, match='not a finished copy-task run'):
    train.load_trained(tmp_path)


def test_readme_prose_on_where_the_ntm_breaks_matches_the_rerun_and_its_probe():
  root = pathlib.Path(__file__).parents[2]
  run = root / 'results' / 'copy_task' / 'ntm_rerun'
  text = ' '.join((root / 'README.md').read_text().split())
  ev = json.loads((run / 'results.json').read_text())['eval']
  exact = [n for n, e in zip(ev['lengths'], ev['bit_errors_mean']) if e == 0]
  first_wrong = next(n for n, e in zip(ev['lengths'], ev['bit_errors_mean']) if e > 0)
  assert exact == [n for n in ev['lengths'] if n < first_wrong]
  assert f'copies every bit up to length {max(exact)} and fails from length ' in text
  assert f'fails from length {first_wrong} on: where' in text
  rows = {r['length']: r for r in json.loads((run / 'probe.json').read_text())['rows']}
  always = max(
    n for n in rows if all(rows[m]['jump_hits'] == 1 for m in rows if m <= n)
  )
  assert f'Up to length {always} every jump lands there' in text
  for n in (50, 100):
    assert f'{rows[n]["jump_hits"]:.2f} at length {n}' in text
  assert f'from {rows[10]["weight_on_first_slot"]:.3f} at length 10' in text
  assert f'to {rows[100]["weight_on_first_slot"]:.3f} at length 100' in text
  missed = [r['wrong_bits_when_missed'] for r in rows.values() if r['jump_hits'] < 1]
  hit = [r['wrong_bits_when_hit'] for r in rows.values()]
  assert f'missed get {min(missed):.2f} to {max(missed):.2f} bits wrong' in text
  assert f'hit get at most {max(hit):.2f}' in text
  # "about half of their bits": within 15% of 8 bits x length / 2.
  for n, r in rows.items():
    if r['wrong_bits_when_missed'] is not None:
      assert abs(r['wrong_bits_when_missed'] / (4 * n) - 1) < 0.15, n
  # "The write head moves one slot a step at every length."
  assert all(r['write_moves_of_one_slot'] == 1.0 for r in rows.values())
