"""The command line the experiments share (experiments/common/cli.py)."""

import pathlib
import signal
import subprocess
import sys
import time

import pytest

from experiments.common import cli
from experiments.omniglot.configs import tiny

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_misplaced_field_suggests_where_it_lives():
  config = tiny.get_config()
  message = cli.unknown_override_message(config, 'n_way')
  assert "config has no field 'n_way'" in message
  assert 'Did you mean --config.data.n_way?' in message
  # The fields that exist.
  assert 'data.{k_shot, n_way, protocol, q_query, train_split}' in message
  message = cli.unknown_override_message(config, 'data.inner_steps')
  assert "config.data has no field 'inner_steps'" in message
  assert '--config.eval.inner_steps or --config.inner_steps' in message
  assert 'k_shot, n_way, protocol, q_query, train_split' in message


def test_misspelled_and_unknown_fields():
  config = tiny.get_config()
  assert 'Did you mean --config.data.n_way?' in cli.unknown_override_message(
    config, 'data.nway'
  )
  assert 'Did you mean --config.meta_batch_size?' in cli.unknown_override_message(
    config, 'meta_batchsize'
  )
  message = cli.unknown_override_message(config, 'nonexistent')
  assert 'No field has a similar name' in message
  assert 'meta_batch_size' in message
  assert 'not a group' in cli.unknown_override_message(config, 'seed.x')
  for good in ('data.n_way', 'eval.inner_steps', 'eval.test_episodes[0]', 'seed'):
    assert cli.unknown_override_message(config, good) is None


@pytest.mark.parametrize(
  ('experiment', 'override', 'expected'),
  [
    ('mann', '--config.num_classes=15', 'Did you mean --config.data.num_classes?'),
    ('sinusoid', '--config.nonexistent=1', "config has no field 'nonexistent'"),
    ('copy_task', '--config.batchsize=2', 'Did you mean --config.batch_size?'),
    ('neural_processes', '--config.nonexistent=1', "no field 'nonexistent'"),
    ('learned_optimizer', '--config.nonexistent=1', "no field 'nonexistent'"),
    ('meta_rl', '--config.nonexistent=1', "no field 'nonexistent'"),
    ('rl2', '--config.num_arm=7', 'Did you mean --config.num_arms'),
    ('neural_statistician', '--config.nonexistent=1', "no field 'nonexistent'"),
  ],
)
def test_every_experiment_names_the_fields_of_a_bad_override(
  tmp_path, experiment, override, expected
):
  result = subprocess.run(
    [sys.executable, '-m', f'experiments.{experiment}.main', f'--workdir={tmp_path}']
    + [override],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  assert result.returncode == 1, result.stderr[-3000:]
  assert expected in result.stderr
  assert 'The fields of config are:' in result.stderr
  assert 'Traceback' not in result.stderr
  assert not list(tmp_path.iterdir())  # nothing ran


def test_resume_hint_names_the_latest_checkpoint(tmp_path):
  argv = ['main.py', f'--workdir={tmp_path}', '--config.seed=3']
  hint = cli.resume_hint('python -m experiments.mann.main', str(tmp_path), argv)
  assert 'No checkpoint was written yet' in hint
  assert hint.endswith(
    f'python -m experiments.mann.main --workdir={tmp_path} --config.seed=3'
  )
  for step in (100, 500, 20):
    (tmp_path / 'checkpoints' / str(step)).mkdir(parents=True)
  (tmp_path / 'checkpoints' / 'tmp.orbax-checkpoint-tmp').mkdir()
  hint = cli.resume_hint('python -m experiments.mann.main', str(tmp_path), argv)
  assert 'The last checkpoint is step 500' in hint


# Each script defines main(argv), run by cli.run as an experiment's main.py runs it,
# with the signal's name in `signum`.
RUN = """
signum = getattr(signal, sys.argv.pop(1))
workdir = cli.define_flags(sys.argv.pop(1), 'Where the run writes.')
cli.run('python run.py', main, workdir)
"""


def run_script(script, tmp_path, signum='SIGTERM'):
  return subprocess.run(
    [sys.executable, '-c', script + RUN, signum, tiny.__file__]
    + [f'--workdir={tmp_path}'],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
    # SIGINT at its default, as in a terminal; an xdist worker can have it ignored,
    # which the child would inherit, and then the run rightly does not catch it.
    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
  )


# A run whose interrupt lands in a garbage-collector callback, as JAX's gc callback
# does when a signal arrives during a collection: Python prints and drops exceptions
# raised there, so the run would go on.
INTERRUPTED_IN_A_GC_CALLBACK = """
import gc, os, signal, sys, time
from experiments.common import cli

sent = []

def signal_itself_while_collecting(phase, info):
  if phase == 'start' and not sent:
    sent.append(True)
    os.kill(os.getpid(), signum)
    for _ in range(10_000):  # the handler runs here, inside the callback
      pass

def main(argv):
  gc.callbacks.append(signal_itself_while_collecting)
  gc.collect()
  gc.callbacks.remove(signal_itself_while_collecting)
  print('collected', flush=True)
  time.sleep(20)
  print('finished', flush=True)
"""


@pytest.mark.parametrize('signum', ['SIGINT', 'SIGTERM'])
def test_an_interrupt_dropped_in_a_gc_callback_is_delivered_again(tmp_path, signum):
  result = run_script(INTERRUPTED_IN_A_GC_CALLBACK, tmp_path, signum)
  assert 'finished' not in result.stdout, 'the interrupt was lost: ' + result.stderr
  assert result.returncode == cli.INTERRUPTED_EXIT_CODE, result.stderr[-3000:]
  assert 'Interrupted. No checkpoint was written yet' in result.stderr
  assert 'Exception ignored' not in result.stderr


# A run whose interrupt lands in a bare ``except:``, as JAX's tracing has, which drops
# it; then a ``finally`` block that an interrupt on its way out must not cut short.
INTERRUPTED_IN_A_BARE_EXCEPT = """
import os, signal, sys, time
from experiments.common import cli

def main(argv):
  try:
    os.kill(os.getpid(), signum)
    for _ in range(10_000):  # the handler runs here
      pass
  except:  # noqa: E722
    print('dropped', flush=True)
  try:
    time.sleep(20)
    print('finished', flush=True)
  finally:
    time.sleep(2.5)  # longer than the redelivery's wait
    print('cleaned up', flush=True)
"""


@pytest.mark.parametrize('signum', ['SIGINT', 'SIGTERM'])
def test_an_interrupt_dropped_by_a_bare_except_is_delivered_again(tmp_path, signum):
  start = time.monotonic()
  result = run_script(INTERRUPTED_IN_A_BARE_EXCEPT, tmp_path, signum)
  assert result.stdout.split() == ['dropped', 'cleaned', 'up'], result.stderr[-3000:]
  assert result.returncode == cli.INTERRUPTED_EXIT_CODE, result.stderr[-3000:]
  assert 'Interrupted. No checkpoint was written yet' in result.stderr
  assert time.monotonic() - start < 15, 'the interrupt came only after the sleep'


# A run interrupted while orbax waits for its last save (``Checkpointer.close``).
INTERRUPTED_WHILE_A_SAVE_IS_WRITTEN = """
import os, signal, sys, threading
import numpy as np
from experiments.common import checkpoint, cli

def main(argv):
  saver = checkpoint.Checkpointer(workdir.value, {'a': 1})
  # Random, so that compression cannot make the write instant.
  big = np.random.default_rng(0).standard_normal(2**25, dtype=np.float32)
  saver.save(1, {'w': big})
  threading.Timer(0.01, os.kill, args=(os.getpid(), signum)).start()
  saver.close()
  print('closed', flush=True)
"""


def test_an_interrupt_during_the_wait_for_a_save_exits_after_it_is_written(tmp_path):
  result = run_script(INTERRUPTED_WHILE_A_SAVE_IS_WRITTEN, tmp_path)
  assert 'closed' not in result.stdout, 'the signal came after the save: no test'
  assert result.returncode == cli.INTERRUPTED_EXIT_CODE, result.stderr[-3000:]
  assert 'The last checkpoint is step 1 in' in result.stderr, result.stderr[-3000:]
  assert [p.name for p in (tmp_path / 'checkpoints').iterdir()] == ['1']
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
