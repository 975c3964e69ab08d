"""A run's records: clean after a resume, validation when asked, readable output."""

import json
import logging
import pathlib
import re
import struct
import sys

import numpy as np
import pytest

from experiments.common import checkpoint, progress
from experiments.omniglot import train
from experiments.omniglot.configs import tiny

ROOT = pathlib.Path(__file__).parents[2]


class Killed(Exception):
  """Stands for the process being stopped."""


def _records(workdir):
  return [json.loads(line) for line in (workdir / 'metrics.jsonl').open()]


def _without_wall_clock(records):
  return [{k: v for k, v in r.items() if k != 'elapsed_s'} for r in records]


def _tensorboard_files(workdir):
  return sorted((workdir / 'tensorboard').glob('events.out.tfevents.*'))


def _tensorboard_scalars(path):
  """(tag, step, value) of every scalar but the wall clock in an events file."""
  from tensorboardX.proto import event_pb2

  data, scalars, at = path.read_bytes(), [], 0
  while at < len(data):
    (length,) = struct.unpack('<Q', data[at : at + 8])
    event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
    at += 12 + length + 4
    for value in event.summary.value:
      if value.tag != 'elapsed_s':  # the wall clock
        scalars.append((value.tag, event.step, value.simple_value))
  return sorted(scalars)


def test_run_stopped_between_checkpoints_keeps_the_records_of_one_that_never_stopped(
  tmp_path, monkeypatch
):
  config = tiny.get_config()
  config.num_iterations = 30
  # Logs at 3, 6, ..., 30, checkpoints at 10, 20, 30: the checkpoint at 20 falls
  # inside a log window (steps 19-21), and validation runs at 15 and 30.
  config.log_every, config.checkpoint_every, config.eval_every = 3, 10, 15
  straight = tmp_path / 'straight'
  train.train_and_evaluate(config, str(straight))

  # Stopped after logging step 27: steps 21-27 were logged after the checkpoint.
  # (Orbax finishes writing a checkpoint in the background; here it is waited for,
  # so that the stop comes after the checkpoint at 20 is complete.)
  log, save = train._log, checkpoint.Checkpointer.save

  def log_then_stop(writer, tb, record):
    log(writer, tb, record)
    if record['step'] == 27:
      raise Killed

  def save_and_wait(self, *args):
    save(self, *args)
    self._manager.wait_until_finished()

  stopped = tmp_path / 'stopped'
  monkeypatch.setattr(train, '_log', log_then_stop)
  monkeypatch.setattr(checkpoint.Checkpointer, 'save', save_and_wait)
  with pytest.raises(Killed):
    train.train_and_evaluate(config, str(stopped))
  assert [r['step'] for r in _records(stopped)][-3:] == [21, 24, 27]
  assert not (stopped / 'timing.jsonl').exists()
  monkeypatch.undo()
  resumed = train.train_and_evaluate(config, str(stopped))
  assert resumed['resumed_from_step'] == 20

  # metrics.jsonl: the same records, the partial window at the checkpoint
  # included; only the wall clock differs.
  assert _without_wall_clock(_records(stopped)) == _without_wall_clock(
    _records(straight)
  )
  assert [r['step'] for r in _records(stopped)] == list(range(3, 31, 3))
  elapsed = [r['elapsed_s'] for r in _records(stopped)]
  assert elapsed == sorted(elapsed), 'training time counts on across the resume'
  # TensorBoard: one events file with the same scalars.
  assert len(_tensorboard_files(stopped)) == 1
  scalars = _tensorboard_scalars(_tensorboard_files(stopped)[0])
  assert scalars == _tensorboard_scalars(_tensorboard_files(straight)[0])
  assert [s[1] for s in scalars if s[0] == 'train_loss'] == list(range(3, 31, 3))
  # timing.jsonl: the stopped stretch's time up to its checkpoint, then the rest.
  timing = [json.loads(line) for line in (stopped / 'timing.jsonl').open()]
  assert [(t['from_step'], t['to_step']) for t in timing] == [(0, 20), (20, 30)]
  assert timing[0]['stopped'] and all(t['seconds'] > 0 for t in timing)
  result = json.loads((stopped / 'test_step30.json').read_text())
  assert result['train_seconds_total'] == pytest.approx(
    sum(t['seconds'] for t in timing), abs=0.11
  )
  assert result['train_seconds_total'] > timing[0]['seconds']
  assert (
    result['test'] == json.loads((straight / 'test_step30.json').read_text())['test']
  )


def test_validation_runs_when_eval_every_is_not_a_multiple_of_log_every(tmp_path):
  config = tiny.get_config()
  config.num_iterations, config.log_every, config.eval_every = 14, 5, 7
  train.train_and_evaluate(config, str(tmp_path))
  records = _records(tmp_path)
  assert [r['step'] for r in records] == [5, 7, 10, 14]
  assert [r['step'] for r in records if 'val_accuracy' in r] == [7, 14]
  # Each log averages the steps since the one before: 5, 2, 3 and 4 steps.
  assert all(np.isfinite(r['train_loss']) for r in records)

  # Started again, the finished run says so at once, before loading any data.
  with pytest.raises(FileExistsError, match='complete run of 14 iterations'):
    train.train_and_evaluate(config, str(tmp_path))


def test_finished_workdir_is_reported_before_any_work(tmp_path, monkeypatch):
  (tmp_path / 'test_step30.json').write_text('{}')

  def no_data(*args, **kwargs):
    raise AssertionError('loaded the data of a finished run')

  monkeypatch.setattr(train.omniglot, 'load_split', no_data)
  config = tiny.get_config()
  with pytest.raises(FileExistsError) as info:
    train.train_and_evaluate(config, str(tmp_path))
  message = str(info.value)
  assert 'complete run of 30 iterations' in message
  assert str(tmp_path / 'test_step30.json') in message
  assert '--workdir' in message


def test_evaluation_logs_plain_progress_lines_off_a_terminal(tmp_path, caplog):
  config = tiny.get_config()
  config.num_iterations = 5
  with caplog.at_level(logging.INFO):
    train.train_and_evaluate(config, str(tmp_path))
  lines = [r.getMessage() for r in caplog.records]
  assert any(line.startswith('validation 5-way: 8/8 episodes (100%)') for line in lines)
  assert any(line.startswith('test 5-way: 8/8 episodes (100%)') for line in lines)
  assert any(line.startswith('maml: 5/5 steps (100%)') for line in lines)
  assert any(line.startswith('running from commit ') for line in lines)


def test_progress_is_a_bar_on_a_terminal_and_a_timed_line_elsewhere(
  monkeypatch, caplog
):
  monkeypatch.setattr(progress, 'on_terminal', lambda: True)
  bar = progress.progress_bar(range(3), total=3, desc='x')
  assert type(bar).__module__.startswith('tqdm')
  bar.close()
  monkeypatch.setattr(progress, 'on_terminal', lambda: False)
  with caplog.at_level(logging.INFO):
    with progress.progress_bar(
      total=100, initial=20, desc='maml', unit='step', interval_s=0.0
    ) as line:
      line.update(30)
      line.set_postfix(loss='0.512')
      line.update(50)
  messages = [r.getMessage() for r in caplog.records]
  assert len(messages) == 2
  assert messages[0].startswith('maml: 50/100 steps (50%), ')
  assert 'steps/s, about ' in messages[0] and messages[0].endswith(' left')
  assert messages[1].startswith('maml: 100/100 steps (100%), ')
  assert messages[1].endswith('loss 0.512') and 'left' not in messages[1]


def test_orbax_info_lines_are_silenced_by_default(tmp_path, monkeypatch, caplog):
  def orbax_lines(workdir):
    caplog.clear()
    with caplog.at_level(logging.INFO):
      saver = checkpoint.Checkpointer(workdir, {'a': 1})
      saver.save(1, {'w': np.zeros(3, np.float32)}, {'step': 1})
      saver.close()
    return [r for r in caplog.records if '/orbax/' in r.pathname.replace('\\', '/')]

  monkeypatch.delenv('JMETA_ORBAX_LOGS', raising=False)
  assert orbax_lines(tmp_path / 'quiet') == []
  monkeypatch.setenv('JMETA_ORBAX_LOGS', '1')
  assert len(orbax_lines(tmp_path / 'verbose')) >= 5
  monkeypatch.delenv('JMETA_ORBAX_LOGS')
  checkpoint.quiet_orbax_logs()


def test_quiet_orbax_logs_drop_the_traceback_of_an_interrupt_and_keep_errors():
  def record(pathname, error):
    try:
      raise error
    except BaseException:  # noqa: BLE001 -- a record of each kind
      exc_info = sys.exc_info()
    return logging.LogRecord(
      'absl', logging.ERROR, pathname, 1, 'Save Finalize thread failed.', (), exc_info
    )

  orbax = '/site-packages/orbax/checkpoint/checkpoint_manager.py'
  logger = logging.getLogger('absl')
  checkpoint.quiet_orbax_logs()
  assert not logger.filter(record(orbax, KeyboardInterrupt(15)))
  assert logger.filter(record(orbax, OSError('disk full')))
  assert logger.filter(record('/work/jmeta/experiments/train.py', KeyboardInterrupt()))
  checkpoint.quiet_orbax_logs(quiet=False)
  assert logger.filter(record(orbax, KeyboardInterrupt(15)))
  checkpoint.quiet_orbax_logs()


def test_checkpoint_carries_its_progress_record(tmp_path):
  saver = checkpoint.Checkpointer(tmp_path, {'a': 1})
  saver.save(3, {'w': np.arange(3, dtype=np.float32)}, {'step': 3, 'x': [1.5]})
  saver.close()
  loaded = checkpoint.Checkpointer(tmp_path, {'a': 1})
  assert loaded.progress() == {'step': 3, 'x': [1.5]}
  state = loaded.restore({'w': np.zeros(3, np.float32)})
  np.testing.assert_array_equal(state['w'], np.arange(3, dtype=np.float32))
  loaded.close()


def test_checkpoint_written_before_progress_records_still_restores(tmp_path):
  import orbax.checkpoint as ocp

  old = ocp.CheckpointManager(tmp_path / 'checkpoints')
  old.save(5, args=ocp.args.StandardSave({'w': np.ones(2, np.float32)}))
  old.wait_until_finished()
  old.close()
  loaded = checkpoint.Checkpointer(tmp_path, {'a': 1})
  assert loaded.latest_step() == 5 and loaded.progress() == {}
  state = loaded.restore({'w': np.zeros(2, np.float32)})
  np.testing.assert_array_equal(state['w'], np.ones(2, np.float32))
  loaded.close()


def test_learning_curve_with_one_logged_point_says_so(tmp_path):
  metrics = tmp_path / 'metrics.jsonl'
  metrics.write_text(
    json.dumps({'step': 5, 'train_loss': 1.2, 'train_accuracy': 0.4}) + '\n'
  )
  fig = train.plot_learning_curve(metrics, tmp_path / 'curve.png', title='t')
  notes = [t.get_text() for t in fig.texts]
  assert any('a single logged point (step 5)' in n for n in notes), notes
  assert (tmp_path / 'curve.png').stat().st_size > 0
  # Two points draw a line and no note.
  with metrics.open('a') as f:
    f.write(json.dumps({'step': 10, 'train_loss': 1.0, 'train_accuracy': 0.5}) + '\n')
  fig = train.plot_learning_curve(metrics, tmp_path / 'curve.png', title='t')
  assert not [t for t in fig.texts if 'single' in t.get_text()]


def test_tensorboard_installs_from_an_extra_and_the_readme_says_how_to_open_it():
  pyproject = (ROOT / 'pyproject.toml').read_text()
  extra = re.search(r'^tensorboard = \[(.*?)\]', pyproject, re.M | re.S)
  assert extra, 'pyproject.toml has no tensorboard extra'
  names = set(re.findall(r'"([A-Za-z0-9_.-]+)', extra.group(1)))
  assert {'tensorboard', 'tensorboardX'} <= names
  readme = (ROOT / 'README.md').read_text()
  assert "pip install -e '.[tensorboard]'" in readme
  assert 'tensorboard --logdir <workdir>/tensorboard' in readme
