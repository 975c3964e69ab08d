"""A run's records read as if the run had never stopped."""

import json
import struct

import numpy as np
import pytest

from experiments.common import checkpoint
from experiments.omniglot import train
from experiments.omniglot.configs import tiny


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
