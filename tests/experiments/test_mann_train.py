"""The MANN one-shot Omniglot experiment: episodes, accuracy by instance, a real run."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from run_checks import assert_log_names_commit, log_to

from experiments.mann import report, train
from experiments.mann.configs import default, lstm, smoke, strings
from experiments.mann.episodes import (
  accuracy_by_instance,
  label_loss,
  make_sequence_sampler,
  model_inputs,
  predicted_labels,
)


def _bank(characters=7, drawings=12, size=8, seed=0):
  """A random uint8 bank: every image is told apart from every other."""
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.integers(0, 256, (characters, drawings, size, size), np.uint8))


def _sample(bank, key=0, episodes=6, **kwargs):
  sampler = make_sequence_sampler(**kwargs)
  batch = jax.jit(sampler.sample_from, static_argnums=2)(
    bank, jax.random.key(key), episodes
  )
  return jax.device_get(batch)  # numpy: the checks index it element by element


def test_each_class_is_shown_its_instances_as_distinct_drawings():
  batch = _sample(_bank(), num_classes=4, instances=5, image_size=8)
  assert batch.images.shape == (6, 20, 8, 8)
  for e in range(6):
    labels, drawings = np.asarray(batch.labels[e]), np.asarray(batch.drawings[e])
    np.testing.assert_array_equal(np.bincount(labels, minlength=4), [5] * 4)
    assert len(set(np.asarray(batch.characters[e]).tolist())) == 4
    for c in range(4):
      assert len(set(drawings[labels == c].tolist())) == 5
  # The order is shuffled, not class by class.
  assert not np.all(np.diff(np.asarray(batch.labels), axis=1) >= 0)


def test_labels_are_a_fresh_assignment_per_episode():
  batch = _sample(_bank(characters=3), episodes=64, num_classes=3, instances=2)
  characters = np.asarray(batch.characters)
  # Each episode maps its 3 labels to the 3 characters one to one, and a character
  # gets every label over the episodes.
  assert all(sorted(row) == [0, 1, 2] for row in characters.tolist())
  labels_of_character_0 = np.argmax(characters == 0, axis=1)
  assert set(labels_of_character_0.tolist()) == {0, 1, 2}


def test_images_are_the_drawn_drawings_rotated_once_per_class():
  bank = _bank(size=8)
  batch = _sample(bank, num_classes=5, instances=4, image_size=8, max_shift=0)
  bank = np.asarray(bank)
  assert set(np.asarray(batch.rotations).ravel().tolist()) == {0, 1, 2, 3}
  for e in range(6):
    for t in range(20):
      label = int(batch.labels[e, t])
      character = int(batch.characters[e, label])
      image = np.asarray(bank[character, int(batch.drawings[e, t])]) / 255.0
      expected = np.rot90(image, int(batch.rotations[e, label]))
      np.testing.assert_allclose(batch.images[e, t], expected, atol=1e-6)


def test_images_are_resized_on_device():
  bank = _bank(size=8)
  batch = _sample(bank, num_classes=2, instances=3, image_size=4, rotate=False)
  label, draw = int(batch.labels[0, 0]), int(batch.drawings[0, 0])
  image = bank[int(batch.characters[0, label]), draw] / 255.0
  expected = jax.image.resize(image, (4, 4), 'linear')
  np.testing.assert_allclose(batch.images[0, 0], expected, atol=1e-6)
  assert int(np.asarray(batch.rotations).max()) == 0


def test_translations_move_each_image_by_its_shift():
  bank = _bank(size=8)
  still = _sample(bank, num_classes=3, instances=4, image_size=8, max_shift=0)
  moved = _sample(bank, num_classes=3, instances=4, image_size=8, max_shift=2)
  shifts = np.asarray(moved.shifts)
  assert shifts.min() == -2 and shifts.max() == 2
  for e in range(6):
    for t in range(12):
      down, right = shifts[e, t]
      expected = np.zeros((12, 12))
      expected[2 + down : 10 + down, 2 + right : 10 + right] = still.images[e, t]
      np.testing.assert_allclose(moved.images[e, t], expected[2:10, 2:10])


def test_the_previous_label_is_shown_one_step_late():
  batch = _sample(_bank(), num_classes=3, instances=4, image_size=8)
  inputs = model_inputs(batch, 3)
  assert inputs.shape == (6, 12, 64 + 3)
  np.testing.assert_array_equal(inputs[:, :, :64], batch.images.reshape(6, 12, 64))
  np.testing.assert_array_equal(inputs[:, 0, 64:], 0)
  np.testing.assert_array_equal(
    inputs[:, 1:, 64:], jax.nn.one_hot(batch.labels[:, :-1], 3)
  )


def test_string_labels_are_distinct_random_strings_and_change_nothing_else():
  bank = _bank()
  one_hot = _sample(bank, key=5, episodes=32, num_classes=4, instances=3)
  string = _sample(
    bank, key=5, episodes=32, num_classes=4, instances=3, string_labels=True
  )
  # The same episodes: string labels draw from a key of their own.
  for field in ('images', 'labels', 'characters', 'rotations', 'drawings', 'shifts'):
    np.testing.assert_array_equal(getattr(string, field), getattr(one_hot, field))
  np.testing.assert_array_equal(
    one_hot.strings, np.tile(np.arange(4)[:, None], 32).T[..., None]
  )
  assert string.strings.shape == (32, 4, 5)
  assert string.strings.min() == 0 and string.strings.max() == 4
  codes = string.strings @ (5 ** np.arange(5))  # each string as a number < 3125
  assert all(len(set(row)) == 4 for row in codes.tolist())  # distinct per episode
  assert len(set(codes.ravel().tolist())) > 100  # and fresh in every episode


def test_string_labels_are_shown_one_step_late_as_five_one_hots():
  batch = _sample(_bank(), num_classes=3, instances=4, image_size=8, string_labels=True)
  inputs = model_inputs(batch, 5)
  assert inputs.shape == (6, 12, 64 + 25)
  np.testing.assert_array_equal(inputs[:, 0, 64:], 0)
  for e in range(6):
    for t in range(1, 12):
      previous = batch.strings[e, batch.labels[e, t - 1]]
      np.testing.assert_array_equal(inputs[e, t, 64:], np.eye(5)[previous].reshape(25))


def test_a_string_prediction_is_right_only_if_every_character_is():
  strings = jnp.array([[[0, 1, 2, 3, 4], [4, 3, 2, 1, 0]]])  # 1 episode, 2 labels
  spelled = jnp.array([[[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [4, 3, 2, 1, 1]]])
  logits = 3.0 * jax.nn.one_hot(spelled, 5).reshape(1, 3, 25)
  np.testing.assert_array_equal(predicted_labels(logits, strings), [[0, 1, -1]])
  # One-hot labels are one-character strings: the prediction is the arg-max.
  logits = jax.random.normal(jax.random.key(0), (2, 7, 4))
  identity = jnp.tile(jnp.arange(4)[:, None], (2, 1, 1))
  np.testing.assert_array_equal(
    predicted_labels(logits, identity), jnp.argmax(logits, -1)
  )


def test_the_string_loss_sums_each_characters_cross_entropy():
  logits = np.asarray(jax.random.normal(jax.random.key(1), (3, 25)), np.float64)
  targets = np.array([[0, 1, 2, 3, 4], [4, 4, 4, 4, 4], [2, 0, 1, 0, 3]])
  per_character = logits.reshape(3, 5, 5)
  log_softmax = per_character - np.log(np.exp(per_character).sum(-1, keepdims=True))
  expected = -np.take_along_axis(log_softmax, targets[..., None], -1)[..., 0].sum(-1)
  got = label_loss(jnp.asarray(logits, jnp.float32), jnp.asarray(targets))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  with pytest.raises(ValueError, match=r'labels\[\.\.\., None\]'):
    label_loss(jnp.zeros((2, 7, 5)), jnp.zeros((2, 7), int))


def test_sampler_refuses_episodes_the_bank_cannot_give():
  with pytest.raises(ValueError, match='num_classes=8 exceeds the 7 characters'):
    _sample(_bank(), num_classes=8, instances=2)
  with pytest.raises(ValueError, match='instances=13 exceeds the 12 drawings'):
    _sample(_bank(), num_classes=2, instances=13)
  with pytest.raises(ValueError, match='uint8'):
    _sample(_bank().astype(jnp.float32), num_classes=2, instances=2)
  with pytest.raises(ValueError, match='max_shift must be in'):
    make_sequence_sampler(image_size=4, max_shift=4)


def test_accuracy_by_instance_on_a_hand_made_episode():
  # Class 0 at steps 0, 2, 5 and class 1 at steps 1, 3, 4; right at 1, 2, 4, 5.
  labels = jnp.array([[0, 1, 0, 1, 1, 0]])
  predictions = jnp.array([[1, 1, 0, 0, 1, 0]])
  accuracy = accuracy_by_instance(predictions, labels, 2, 4)
  np.testing.assert_allclose(accuracy[0, :3], [0.5, 0.5, 1.0])
  assert np.isnan(accuracy[0, 3])  # no class was shown a 4th time


def test_accuracy_by_instance_refuses_mismatched_shapes():
  with pytest.raises(ValueError, match='both be \\(episodes, steps\\)'):
    accuracy_by_instance(jnp.zeros((2, 5), int), jnp.zeros((2, 6), int), 2, 3)


def test_the_configs_train_the_papers_models_for_100000_episodes():
  config = default.get_config()
  assert train.num_updates(config) == 6_250
  mann = train.make_model(config)
  params = mann.init(jax.random.key(0), jnp.zeros((50, 405)))
  assert params['controller']['params']['ii']['kernel'].shape == (405 + 160, 200)
  assert train.make_model(lstm.get_config()).step is not None


def test_bad_config_values_are_named():
  config = smoke.get_config()
  config.model.name = 'gru'
  with pytest.raises(ValueError, match='config.model.name'):
    train.check_config(config)
  config = smoke.get_config()
  config.model.memory_size = 3
  with pytest.raises(ValueError, match="\\['memory_size'\\]"):
    train.make_model(config)
  config = smoke.get_config()
  config.data.test_split = 'val'
  with pytest.raises(ValueError, match='also a training split'):
    train.check_config(config)
  config = smoke.get_config()
  config.data.num_classes = 500
  with pytest.raises(ValueError, match='exceeds the 423 characters of the test'):
    train.load_banks(config)


def _train_on_one_batch(config, features: int, updates: int = 25):
  """(model, final state, losses) of ``updates`` training steps on one batch of
  episodes (the same key every step), from params initialised for ``features``."""
  model, optimizer = train.make_model(config), train.make_optimizer(config)
  sampler = train.make_sampler(config)
  step = train.make_train_step(config, model, optimizer, sampler)
  params = model.init(jax.random.key(0), jnp.zeros((20, features)))
  state = train.TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params))
  bank, key = _bank(size=28), jax.random.key(3)
  losses = []
  for _ in range(updates):
    state, metrics = step(state, key, bank)
    losses.append(float(metrics['loss']))
  return model, state, losses


def test_loss_falls_on_a_fixed_batch():
  config = smoke.get_config()
  config.data.image_size = 8
  config.data.instances = 4
  config.optimizer.learning_rate = 3e-2
  model, state, losses = _train_on_one_batch(config, 64 + 5)
  # From log(5) = 1.61 to 1.30 (0.80 of the first five) with XLA:CPU.
  assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5]), losses
  assert int(state.step) == 25


def test_loss_falls_with_string_labels_on_a_fixed_batch():
  config = smoke.get_config()
  config.data.update(image_size=8, instances=4, labels='string')
  config.optimizer.learning_rate = 3e-2
  model, state, losses = _train_on_one_batch(config, 64 + 25)
  assert model.apply(state.params, jnp.zeros((20, 64 + 25))).shape == (20, 25)
  # From 5 log(5) = 8.05 (five characters' cross-entropies) downwards.
  assert abs(losses[0] - 5 * np.log(5)) < 0.5, losses
  assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5]), losses


def test_the_strings_config_is_table_2s_fifteen_classes():
  for model in ('mann', 'lstm'):
    config = strings.get_config(model)
    train.check_config(config)
    assert (config.data.num_classes, config.data.labels) == (15, 'string')
    assert config.model.name == model
    source, row = report.paper_row(model, 15, 'string')
    assert source == 'Santoro et al. (2016), Table 2, 15 classes'
    assert row[1] == {'mann': 62.6, 'lstm': 2.2}[model]
  assert report.paper_row('mann', 5, 'one_hot')[1] == report.PAPER_TABLE_1['mann']
  assert report.paper_row('mann', 15, 'one_hot') is None
  config = strings.get_config()
  config.data.labels = 'five_hot'
  with pytest.raises(ValueError, match='config.data.labels'):
    train.check_config(config)
  with pytest.raises(ValueError, match='one of'):
    strings.get_config('ntm')


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
  """The smoke config's run (6 updates, 8 test episodes) and its workdir."""
  workdir = tmp_path_factory.mktemp('mann') / 'run'
  with log_to(workdir.parent / 'log.txt'):
    out = train.train_and_evaluate(smoke.get_config(), str(workdir))
  return out, workdir


def test_smoke_run_writes_its_files(smoke_run):
  out, workdir = smoke_run
  for name in train.OUTPUTS:
    assert (workdir / name).stat().st_size > 0, name
  records = [json.loads(line) for line in (workdir / 'metrics.jsonl').open()]
  assert [r['step'] for r in records] == [2, 4, 6]
  assert {'train_loss', 'train_accuracy_1', 'train_accuracy_10'} <= records[0].keys()
  saved = json.loads((workdir / 'results.json').read_text())
  assert_log_names_commit(workdir.parent / 'log.txt', saved['run']['git_commit'])
  assert saved['updates'] == 6 and saved['episodes_trained'] == 24
  assert len(saved['test']['accuracy']) == 10 and saved['test']['characters'] == 423
  # Each is the mean over 8 episodes of (correct / 5 classes) at that instance: a
  # count of correct answers out of 40.
  correct = np.asarray(saved['test']['accuracy']) * 40
  np.testing.assert_allclose(correct, np.round(correct), atol=1e-4)
  assert np.all((0 <= correct) & (correct <= 40))
  assert saved['seconds_per_update'] > 0
  table = (workdir / 'results.md').read_text()
  assert 'MANN (LRUA) (Santoro et al. (2016), Table 1) | 36.4 | 82.8' in table
  with pytest.raises(FileExistsError, match='does not overwrite'):
    train.train_and_evaluate(smoke.get_config(), str(workdir))


def test_report_tables_and_plots_finished_runs(smoke_run, tmp_path):
  _, workdir = smoke_run
  assert report.main([str(workdir), str(workdir), '--out', str(tmp_path)]) == 0
  table = (tmp_path / 'results.md').read_text()
  assert table.count('(this run)') == 2 and table.count('Table 1) |') == 1
  assert (tmp_path / 'accuracy_by_instance.png').stat().st_size > 0


def test_report_gives_a_string_label_run_table_2s_row(smoke_run):
  _, workdir = smoke_run
  (result,) = report.load_results([workdir])
  assert result['paper']['source'] == 'Santoro et al. (2016), Table 1'
  result['config']['data']['labels'] = 'string'
  result['test']['num_classes'] = 15
  table = report.results_table([result])
  assert '| MANN (LRUA), string labels (this run) |' in table
  assert (
    '| MANN (LRUA) (Santoro et al. (2016), Table 2, 15 classes) | 0.1 | 62.6' in table
  )
  assert 'Table 1' not in table


def test_a_stopped_run_resumes_to_the_same_params(smoke_run, tmp_path):
  out, _ = smoke_run
  config = smoke.get_config()
  config.train_episodes = 12  # stops after the checkpoint at update 3
  train.train_and_evaluate(config, str(tmp_path))
  for name in train.OUTPUTS:  # as if it had stopped before its test
    (tmp_path / name).unlink()
  config.train_episodes = 24
  resumed = train.train_and_evaluate(config, str(tmp_path))
  assert resumed['resumed_from_update'] == 3
  jax.tree.map(
    np.testing.assert_array_equal, resumed['state'].params, out['state'].params
  )
  records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').open()]
  assert [r['step'] for r in records] == [2, 3, 4, 6]


def test_readme_mann_table_and_prose_match_the_committed_runs():
  root = pathlib.Path(__file__).parents[2]
  readme = (root / 'README.md').read_text()
  workdirs = [
    root / 'results' / 'mann' / 'full' / r
    for r in ('mann_5way', 'lstm_5way', 'mann_5way_long', 'lstm_5way_long')
  ]
  begin = (
    '<!-- generated by `python -m experiments.mann.report results/mann/full/mann_5way '
    'results/mann/full/lstm_5way results/mann/full/mann_5way_long '
    'results/mann/full/lstm_5way_long`; do not edit by hand -->\n'
  )
  section = readme.split(begin, 1)[1].split('<!-- end generated mann -->', 1)[0]
  mann, lstm, long, lstm_long = report.load_results(workdirs)
  assert section == report.results_table([mann, lstm, long, lstm_long])
  text = ' '.join(readme.split())
  tenth = 100 * mann['test']['accuracy'][9]
  assert (
    f"MANN reaches {tenth:.1f}% at the 10th presentation against the paper's "
    f'{report.PAPER_TABLE_1["mann"][-1]:.1f}%'
  ) in text
  assert f"paper's {mann['episodes_trained']:,} episodes" in text
  # Label elimination alone: the k-th new class of an episode has 6 - k labels left.
  elimination = 100 * np.mean([1 / (6 - k) for k in range(1, 6)])
  assert f'earns {elimination:.1f}% on first presentations' in text
  # The long run: the reference code's 100,000 updates of 16 episodes, its
  # accuracies by presentation, and where they stand against Table 1.
  assert (long['updates'], long['episodes_trained']) == (100_000, 1_600_000)
  ours = [100 * long['test']['accuracy'][k - 1] for k in report.TABLE_INSTANCES]
  listed = ', '.join(f'{a:.1f}' for a in ours[:-1]) + f' and {ours[-1]:.1f}%'
  assert f'tests at {listed} at the 1st to 5th and 10th presentations' in text
  paper = report.PAPER_TABLE_1['mann']
  assert all(round(a, 1) >= p for a, p in zip(ours[:5], paper[:5]))
  assert f'{paper[-1] - round(ours[-1], 1):.1f} points under it at the 10th' in text
  # The LSTM at the same length: its accuracies, against the paper's LSTM row and
  # MANN's lead at the 2nd and 10th presentations.
  assert (lstm_long['updates'], lstm_long['model']) == (100_000, 'lstm')
  base = [100 * lstm_long['test']['accuracy'][k - 1] for k in report.TABLE_INSTANCES]
  listed = ', '.join(f'{a:.1f}' for a in base[:-1]) + f' and {base[-1]:.1f}%'
  assert f'it tests at {listed}, far above the paper' in text
  assert f'LSTM row ({report.PAPER_TABLE_1["lstm"][-1]:.1f}% at the 10th' in text
  lead = [round(a, 1) - round(b, 1) for a, b in zip(ours, base)]
  assert min(lead) > 0  # below MANN at every presentation
  assert f'by {lead[1]:.1f} points at the 2nd and {lead[-1]:.1f} at the 10th' in text
  # Table 2's 15-class targets, as the report's constants give them.
  for model, name in (('mann', 'MANN (LRUA)'), ('lstm', 'LSTM')):
    row = ' / '.join(f'{a:.1f}' for a in report.PAPER_TABLE_2[model, 15])
    assert f'{name} {row}' in text
