"""The Omniglot runner's command line: bad overrides, dependent settings, Ctrl-C."""

import os
import pathlib
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import chex
import jax
import pytest

from experiments.common import cli
from experiments.common.checkpoint import STATE
from experiments.omniglot import main
from experiments.omniglot.configs import maml, matching

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = 'experiments/omniglot/configs/tiny.py'
MAML = 'experiments/omniglot/configs/maml.py'


def run_main(*args, env=None, timeout=120):
  return subprocess.run(
    [sys.executable, '-m', 'experiments.omniglot.main', *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    env=env,
    timeout=timeout,
    check=False,
  )


# --- Unknown and misplaced overrides ------------------------------------------------


@pytest.mark.parametrize(
  'override, expected',
  [
    ('--config.n_way=abc', 'Did you mean --config.data.n_way?'),
    ('--config.nonexistent=1', "config has no field 'nonexistent'"),
  ],
)
def test_command_line_names_the_fields_instead_of_an_attribute_error(
  tmp_path, override, expected
):
  result = run_main(f'--workdir={tmp_path}', f'--config={TINY}', override)
  assert result.returncode == 1, result.stderr[-3000:]
  assert expected in result.stderr
  assert 'The fields of config are:' in result.stderr
  assert 'Traceback' not in result.stderr
  assert 'AttributeError' not in result.stderr


# --- Overrides that leave a dependent setting behind --------------------------------


def overridden(module, overrides, setting='5w1s'):
  config = module.get_config(setting)
  for path, value in overrides.items():
    group = config
    *parents, name = path.split('.')
    for parent in parents:
      group = group[parent]
    group[name] = value
  return config


def warnings_for(module, overrides):
  def load(setting):
    return module.get_config(setting or '5w1s')

  return main.dependent_setting_warnings(
    overridden(module, overrides), overrides, load, 'the/config.py'
  )


def test_changed_n_way_names_the_inner_rate_of_the_same_alpha():
  (message,) = warnings_for(maml, {'data.n_way': 7})
  # MAML's 5-way rate is 0.4 per class, 2.0 here; the same alpha at 7-way is 2.8.
  assert 'keeps inner_learning_rate=2,' in message
  assert '--config.inner_learning_rate=2.8 to keep alpha' in message
  assert warnings_for(maml, {'data.n_way': 7, 'inner_learning_rate': 2.0}) == []


def test_a_shipped_setting_points_to_its_config():
  (message,) = warnings_for(maml, {'data.n_way': 20})
  assert '--config=the/config.py:20w1s' in message
  assert 'meta_batch_size=16 (here 32)' in message
  assert 'inner_steps=5 (here 1)' in message


def test_fields_set_equal_to_n_way_or_k_shot_are_named():
  (message,) = warnings_for(maml, {'data.k_shot': 3})
  assert 'keeps data.q_query=1' in message
  assert '--config.data.q_query=3' in message
  (message,) = warnings_for(matching, {'data.n_way': 7})
  assert '--config.data.train_n_way=7' in message
  assert warnings_for(maml, {'num_iterations': 5}) == []


def test_the_warning_is_logged_by_the_command(tmp_path):
  # --cpu_devices=-1 stops the run right after the warnings, before any training.
  result = run_main(
    f'--workdir={tmp_path}',
    f'--config={MAML}:5w1s',
    '--config.data.n_way=7',
    '--cpu_devices=-1',
  )
  assert '--cpu_devices must be >= 0' in result.stderr, result.stderr[-3000:]
  assert re.search(
    r'^W.*--config.inner_learning_rate=2.8 to keep alpha', result.stderr, re.M
  )


# --- Ctrl-C --------------------------------------------------------------------------


def omniglot_env():
  if not os.environ.get('JMETA_OMNIGLOT_DIR'):
    pytest.fail(
      'JMETA_OMNIGLOT_DIR is not set: point it at the folder with the Omniglot '
      'archives (see README, Data).'
    )
  env = dict(os.environ, JAX_LOG_COMPILES='1')
  # A real compile, not a hit in the test session's persistent compilation cache.
  env.pop('JAX_COMPILATION_CACHE_DIR', None)
  env['JAX_ENABLE_COMPILATION_CACHE'] = 'false'
  return env


def interrupt_tiny_run(
  workdir, ready, deadline_s=240, signum=signal.SIGINT, overrides=()
):
  """Starts a tiny run, sends ``signum`` once ``ready(line, state)`` says so.

  Returns the exit status and stderr. ``ready`` sees each stderr line as it comes.
  For SIGTERM the run starts with SIGINT ignored, as a shell starts a background job.
  """
  command = [
    sys.executable,
    '-m',
    'experiments.omniglot.main',
    f'--workdir={workdir}',
    f'--config={TINY}',
    *overrides,
  ]
  if signum == signal.SIGTERM:  # `trap '' INT` is inherited through exec
    command = ['sh', '-c', 'trap "" INT; exec "$@"', 'sh', *command]
  process = subprocess.Popen(
    command,
    cwd=REPO,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,  # the logs, compile logs included, and the hint
    text=True,
    env=omniglot_env(),
    # A foreground run: SIGINT at its default even where this process inherited it
    # ignored (an xdist worker can), which Python would keep and the run never see.
    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
  )
  lines = queue.Queue()

  def pump():
    for line in process.stderr:
      lines.put(line)
    lines.put(None)

  threading.Thread(target=pump, daemon=True).start()
  output, state, start, sent = [], {}, time.monotonic(), False
  while True:
    try:
      line = lines.get(timeout=0.2)
    except queue.Empty:
      line = ''
    if line is None:
      break
    output.append(line)
    if not sent and (ready(line, state) or time.monotonic() - start > deadline_s):
      process.send_signal(signum)
      sent = True
  process.wait(timeout=120)
  assert sent, 'the run ended before it was interrupted:\n' + ''.join(output[-40:])
  return process.returncode, ''.join(output)


def in_a_long_compile(line, state, seconds=3.0):
  """True once an XLA compile has been running for ``seconds``: the meta-update's."""
  if 'Compiling ' in line:
    state['since'] = time.monotonic()
  elif 'Finished XLA compilation' in line:
    state.pop('since', None)
  return 'since' in state and time.monotonic() - state['since'] > seconds


def assert_clean_exit(returncode, output):
  assert 'Segmentation fault' not in output, output[-3000:]
  assert 'Fatal Python error' not in output, output[-3000:]
  assert 'Traceback' not in output, output[-3000:]
  assert returncode == cli.INTERRUPTED_EXIT_CODE, (returncode, output[-3000:])


def test_sigint_while_xla_compiles_exits_cleanly_with_the_resume_command(tmp_path):
  returncode, output = interrupt_tiny_run(tmp_path, in_a_long_compile)
  assert_clean_exit(returncode, output)
  assert 'Interrupted. No checkpoint was written yet' in output
  assert (
    f'python -m experiments.omniglot.main --workdir={tmp_path} --config={TINY}'
    in output
  )


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM], ids=['int', 'term'])
def test_interrupt_after_a_checkpoint_leaves_it_intact_and_names_it(tmp_path, signum):
  import orbax.checkpoint as ocp  # noqa: PLC0415 -- this test only

  def checkpoint_written(line, state):
    del line, state
    directory = tmp_path / 'checkpoints'
    return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())

  # Long enough that the signal lands in training: the tiny run's 30 steps end
  # about 3 s after its first checkpoint, less on a fast machine.
  returncode, output = interrupt_tiny_run(
    tmp_path,
    checkpoint_written,
    signum=signum,
    overrides=['--config.num_iterations=3000'],
  )
  assert_clean_exit(returncode, output)
  step = int(re.search(r'The last checkpoint is step (\d+)', output).group(1))
  assert 'the same command resumes from it' in output
  assert ocp.CheckpointManager(tmp_path / 'checkpoints').latest_step() == step
  # Every array of the state reads back (on this process's one device).
  path = tmp_path / 'checkpoints' / str(step) / STATE
  reader = ocp.StandardCheckpointer()
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(
    lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
    reader.metadata(path).item_metadata,
  )
  restored = reader.restore(path, abstract)
  assert int(restored['step']) == step
  chex.assert_tree_all_finite(restored['params'])
