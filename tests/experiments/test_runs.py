"""Long runs: registered in results/, carried by git, continued on another clone."""

import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments import runs
from experiments.common.workdir import completed_result
from experiments.omniglot import train
from experiments.omniglot.configs import tiny

ROOT = pathlib.Path(__file__).parents[2]
WORKDIR = 'results/omniglot/full/tiny_test'
COMMAND = [
  'python',
  '-m',
  'experiments.omniglot.main',
  f'--workdir={WORKDIR}',
  '--config=experiments/omniglot/configs/tiny.py',
  '--config.num_iterations=20',
  # Logs at 4, 8, 12, 15 (validation), 16, 20: the checkpoint at 10 falls inside a
  # log window, which it saves.
  '--config.log_every=4',
  '--cpu_devices=1',
]
# The runner's command line, stopped as by SIGKILL (no clean-up at all) right after
# it logs step 15; its checkpoint at step 10 is finished before it stops.
STOPPED_AT_15 = """
import os, sys
from absl import app
from experiments.common import checkpoint
from experiments.omniglot import main, train

save = checkpoint.Checkpointer.save
def save_and_wait(self, *args, **kwargs):
  save(self, *args, **kwargs)
  self._manager.wait_until_finished()
checkpoint.Checkpointer.save = save_and_wait

log = train._log
def log_then_die(writer, tb, record):
  log(writer, tb, record)
  if record['step'] == 15:
    os._exit(137)
train._log = log_then_die
sys.argv = ['experiments.omniglot.main', *sys.argv[1:]]
app.run(main.main)
"""


def _run(args, cwd, **kwargs):
  proc = subprocess.run(
    args, cwd=cwd, capture_output=True, text=True, timeout=600, **kwargs
  )
  return proc


def _git(cwd, *args):
  proc = _run(
    ['git', '-c', 'user.name=test', '-c', 'user.email=test@example.com', *args], cwd
  )
  assert proc.returncode == 0, proc.stderr
  return proc.stdout


def _metrics(workdir):
  records = [json.loads(line) for line in (workdir / 'metrics.jsonl').open()]
  return [{k: v for k, v in r.items() if k != 'elapsed_s'} for r in records]


def _final_state(workdir):
  import orbax.checkpoint as ocp

  step = runs.checkpoint_steps(workdir)[-1]
  checkpointer = ocp.StandardCheckpointer()
  state = checkpointer.restore(workdir / 'checkpoints' / str(step) / 'default')
  checkpointer.close()
  return step, state


@pytest.mark.skipif(
  not (ROOT / '.git').exists() or shutil.which('git') is None,
  reason='needs git and a git checkout of jmeta',
)
def test_run_stopped_and_continued_on_a_fresh_clone_ends_bit_identical(tmp_path):
  # Machine A: a clone of the committed HEAD registers the run and trains it until
  # it is stopped after step 15 (its last checkpoint: step 10).
  machine_a, machine_b = tmp_path / 'a', tmp_path / 'b'
  _git(tmp_path, 'clone', '-q', str(ROOT), str(machine_a))
  python = [sys.executable, '-m', 'experiments.runs']
  proc = _run([*python, 'register', WORKDIR, '--', *COMMAND], machine_a)
  assert proc.returncode == 0, proc.stderr
  stopped = _run([sys.executable, '-c', STOPPED_AT_15, *COMMAND[3:]], machine_a)
  assert stopped.returncode == 137, stopped.stderr[-3000:]
  workdir_a = machine_a / WORKDIR
  assert runs.checkpoint_steps(workdir_a) == [10]
  assert [r['step'] for r in _metrics(workdir_a)] == [4, 8, 12, 15]

  # Everything git carries of the workdir goes in a commit: the checkpoint too.
  _git(machine_a, 'add', WORKDIR)
  _git(machine_a, 'commit', '-q', '-m', 'tiny_test stopped at step 15')
  carried = _git(machine_a, 'ls-files', WORKDIR).split()
  assert f'{WORKDIR}/checkpoints/10/default/manifest.ocdbt' in carried
  assert not [f for f in carried if 'tensorboard' in f or f.endswith('run.lock')]

  # Machine B: a fresh clone of that commit, nothing else.
  _git(tmp_path, 'clone', '-q', str(machine_a), str(machine_b))
  status = _run([*python, 'status'], machine_b)
  assert status.returncode == 0, status.stderr
  row = next(line for line in status.stdout.splitlines() if 'tiny_test' in line)
  assert 'stopped' in row and '10/20 (50%)' in row, status.stdout
  # Only this run: the repository carries real long runs too.
  proc = _run([*python, 'continue', '--wait', 'tiny_test'], machine_b)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert 'started from step 10' in proc.stdout
  status = _run([*python, 'status'], machine_b)
  row = next(line for line in status.stdout.splitlines() if 'tiny_test' in line)
  assert 'done' in row and '20/20 (100%)' in row, status.stdout

  # The same run, never stopped, from the same commit.
  straight = 'runs/straight'
  command = [sys.executable, *COMMAND[1:3], f'--workdir={straight}', *COMMAND[4:]]
  proc = _run(command, machine_a)
  assert proc.returncode == 0, proc.stderr[-3000:]

  workdir_b = machine_b / WORKDIR
  assert runs.checkpoint_steps(workdir_b) == [20]  # a registered run keeps one
  step_b, state_b = _final_state(workdir_b)
  step, state = _final_state(machine_a / straight)
  assert step_b == step == 20
  import jax

  jax.tree.map(np.testing.assert_array_equal, state_b, state)
  assert _metrics(workdir_b) == _metrics(machine_a / straight)
  result_b = json.loads((workdir_b / 'test_step20.json').read_text())
  result = json.loads((machine_a / straight / 'test_step20.json').read_text())
  assert result_b['test'] == result['test']
  # Each stretch names the commit it ran from.
  head_b = _git(machine_b, 'rev-parse', 'HEAD').strip()
  assert result_b['run']['git_commit'] == head_b
  timing = [json.loads(line) for line in (workdir_b / 'timing.jsonl').open()]
  assert [(t['from_step'], t['to_step']) for t in timing] == [(0, 10), (10, 20)]
  assert [t['git_commit'] for t in timing] == [
    _git(machine_a, 'rev-parse', 'HEAD~1').strip(),
    head_b,
  ]
  assert '# continued by `python -m experiments.runs continue`' in (
    (workdir_b / 'log.txt').read_text()
  )


def _fake_run(root, name, *, step=None, seconds=None, total=20, done=False):
  workdir = root / 'results' / 'omniglot' / 'full' / name
  workdir.mkdir(parents=True)
  command = ['python', '-m', 'x', f'--workdir={workdir.relative_to(root)}']
  entry = {'name': name, 'workdir': str(workdir.relative_to(root)), 'command': command}
  (workdir / runs.RUN_FILE).write_text(json.dumps(entry))
  if step is not None:
    progress = workdir / 'checkpoints' / str(step) / 'progress'
    progress.mkdir(parents=True)
    (progress / 'metadata').write_text(
      json.dumps({'num_iterations': total, 'train_seconds': seconds})
    )
    (workdir / 'checkpoints' / f'{step + 10}.orbax-checkpoint-tmp').mkdir()
  if done:
    (workdir / f'test_step{total}.json').write_text('{}')
  return workdir


def test_status_shows_each_runs_state_progress_and_time_to_finish(tmp_path):
  _fake_run(tmp_path, 'fresh')
  _fake_run(tmp_path, 'half', step=500, seconds=1000.0, total=2000)
  running = _fake_run(tmp_path, 'running', step=10, seconds=5.0)
  _fake_run(tmp_path, 'finished', step=20, seconds=9.0, done=True)
  with runs.workdir_lock(running):
    found = runs.load_runs(tmp_path)
    statuses = {r.name: runs.run_status(r, tmp_path) for r in found}
    table = runs.format_status(list(statuses.values()))
  assert statuses['fresh']['state'] == 'not started'
  half = statuses['half']
  assert (half['state'], half['step'], half['num_iterations']) == ('stopped', 500, 2000)
  assert half['seconds_left'] == pytest.approx(1500 * 2.0)
  assert statuses['running']['state'] == 'running'
  assert f'pid {os.getpid()}' in statuses['running']['held_by']
  assert statuses['finished']['state'] == 'done'
  assert statuses['finished']['result'].endswith('test_step20.json')
  half_row = next(line for line in table.splitlines() if line.startswith('half'))
  assert '500/2,000 (25%)' in half_row and '50.0 min' in half_row
  assert runs.holder(running) is None  # released


def test_a_pruned_finished_run_shows_the_step_its_result_reached(tmp_path):
  workdir = _fake_run(tmp_path, 'pruned')  # no checkpoint left
  (workdir / 'config.json').write_text(json.dumps({'num_iterations': 20}))
  (workdir / 'test_step20.json').write_text(json.dumps({'iterations': 20}))
  (status,) = [runs.run_status(r, tmp_path) for r in runs.load_runs(tmp_path)]
  assert (status['state'], status['step'], status['num_iterations']) == ('done', 20, 20)
  assert '20/20 (100%)' in runs.format_status([status])


def test_a_run_that_writes_results_json_is_done_at_its_updates(tmp_path):
  """MANN and the copy task write results.json with the updates trained."""
  workdir = _fake_run(tmp_path, 'mann')  # pruned, and no num_iterations anywhere
  (workdir / 'results.json').write_text(
    json.dumps({'updates': 6250, 'train_seconds_total': 3660.5})
  )
  (status,) = [runs.run_status(r, tmp_path) for r in runs.load_runs(tmp_path)]
  assert (status['state'], status['step'], status['num_iterations']) == (
    'done',
    6250,
    6250,
  )
  assert status['result'].endswith('results.json')
  assert status['train_seconds'] == 3660.5
  # A results.json short of the run's length is not a finished run.
  (workdir / 'results.json').write_text(json.dumps({'updates': 10}))
  assert completed_result(workdir, 20) is None
  assert completed_result(workdir, 10).name == 'results.json'


def test_continue_starts_only_unfinished_idle_runs(tmp_path, monkeypatch):
  _fake_run(tmp_path, 'half', step=10, seconds=5.0)
  _fake_run(tmp_path, 'finished', step=20, seconds=9.0, done=True)
  started = []
  out = io.StringIO()
  monkeypatch.setattr(
    runs, 'start', lambda run, root: started.append(run.name) or FakeProc()
  )
  runs.continue_runs(tmp_path, out=out)
  assert started == ['half']
  assert 'finished: done, not started' in out.getvalue()


class FakeProc:
  pid = 1


@pytest.mark.skipif(
  not pathlib.Path('/proc/self/autogroup').exists(),
  reason='no autogroup scheduling on this system',
)
def test_a_started_run_has_its_session_niced_too(tmp_path):
  # Inside a cpu cgroup the kernel prints nothing here: autogroups do not apply.
  if not pathlib.Path('/proc/self/autogroup').read_text().split():
    pytest.skip('autogroup scheduling is not in effect for this process (a cgroup)')
  # Some containers refuse the write; the run still starts there.
  probe = subprocess.Popen(['sleep', '5'], start_new_session=True)
  try:
    writable = runs.lower_session_priority(probe.pid)
  finally:
    probe.kill()
    probe.wait()
  if not writable:
    pytest.skip('this system refuses to nice a session group')
  time.sleep(0.2)  # the kernel takes one such write per 100 ms from a non-root user
  ours = pathlib.Path('/proc/self/autogroup').read_text().split()
  run = runs.Run(
    'sleeper',
    pathlib.Path('results/x/full/sleeper'),
    ('python', '-c', 'import time; time.sleep(30)'),
  )
  proc = runs.start(run, tmp_path)
  try:
    group = pathlib.Path(f'/proc/{proc.pid}/autogroup').read_text().split()
    # Its own group (a session of its own), niced like the process.
    assert group[0] != ours[0]
    assert group[-2:] == ['nice', str(runs.NICE)]
    # nohup then execs nice, which sets the process's own level: wait for it.
    for _ in range(100):
      if os.getpriority(os.PRIO_PROCESS, proc.pid) == runs.NICE:
        break
      time.sleep(0.05)
    assert os.getpriority(os.PRIO_PROCESS, proc.pid) == runs.NICE
  finally:
    proc.kill()
    proc.wait()
  assert not runs.lower_session_priority(2**22 + 1)  # no such process


def test_register_refuses_a_workdir_whose_checkpoints_would_not_travel(tmp_path):
  with pytest.raises(ValueError, match='under results/'):
    runs.register('runs/x', ['python', '--workdir=runs/x'], root=ROOT)
  with pytest.raises(ValueError, match='--workdir=results/omniglot/full/x'):
    runs.register('results/omniglot/full/x', ['python', '--workdir=y'], root=ROOT)
  if (ROOT / '.git').exists():
    with pytest.raises(ValueError, match='git ignores'):
      runs.register(
        'results/omniglot/x', ['python', '--workdir=results/omniglot/x'], root=ROOT
      )
  assert not (ROOT / 'results' / 'omniglot' / 'full' / 'x').exists()


def test_a_workdir_is_trained_by_one_process_at_a_time(tmp_path):
  config = tiny.get_config()
  with runs.workdir_lock(tmp_path):
    with pytest.raises(runs.WorkdirBusyError, match=f'pid {os.getpid()}'):
      train.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / 'checkpoints').exists()


def test_time_to_finish_uses_the_latest_segments_rate():
  # Segment 1 (steps 0-9,000) kept no time; the last one ran 2,000 steps in 1,000 s.
  progress = {
    'train_seconds': 1000.0,
    'segment': {'from_step': 9000, 'seconds': 1000.0},
  }
  assert runs.seconds_per_step(progress, 11000, 1000.0) == pytest.approx(0.5)
  # Without a segment record: all the time over all the steps.
  assert runs.seconds_per_step({}, 500, 1000.0) == pytest.approx(2.0)
  assert runs.seconds_per_step({}, 500, None) is None


def test_a_run_registered_for_a_backend_is_continued_only_there(tmp_path, monkeypatch):
  command = ['python', '-m', 'x', '--workdir=results/omniglot/full/on_gpu']
  runs.register('results/omniglot/full/on_gpu', command, backend='gpu', root=tmp_path)
  with pytest.raises(ValueError, match='backend must be one of'):
    runs.register(
      'results/omniglot/full/on_gpu', command, backend='cuda', root=tmp_path
    )
  progress = tmp_path / 'results/omniglot/full/on_gpu/checkpoints/10/progress'
  progress.mkdir(parents=True)
  (progress / 'metadata').write_text(json.dumps({'num_iterations': 20}))
  _fake_run(tmp_path, 'anywhere', step=10, seconds=5.0)
  started = []
  monkeypatch.setattr(
    runs, 'start', lambda run, root: started.append(run.name) or FakeProc()
  )
  monkeypatch.setattr(runs, 'current_backend', lambda: 'cpu')
  out = io.StringIO()
  runs.continue_runs(tmp_path, out=out)
  assert started == ['anywhere']
  assert 'on_gpu: registered to train on gpu' in out.getvalue()
  runs.continue_runs(tmp_path, names=['on_gpu'], out=out)
  assert started == ['anywhere']  # naming it is not enough
  runs.continue_runs(tmp_path, names=['on_gpu'], any_backend=True, out=out)
  assert started == ['anywhere', 'on_gpu']
  monkeypatch.setattr(runs, 'current_backend', lambda: 'gpu')
  runs.continue_runs(tmp_path, names=['on_gpu'], out=out)
  assert started == ['anywhere', 'on_gpu', 'on_gpu']
  statuses = [runs.run_status(r, tmp_path) for r in runs.load_runs(tmp_path)]
  row = next(
    line for line in runs.format_status(statuses).splitlines() if 'on_gpu' in line
  )
  assert 'stopped (on gpu)' in row and '10/20' in row


def test_status_of_a_run_not_started_reads_its_length_from_the_config_file(tmp_path):
  (tmp_path / 'cfg.py').write_text(
    'import ml_collections\n\n\n'
    'def get_config(arg=None):\n'
    "  return ml_collections.ConfigDict({'num_iterations': 7 if arg else 123})\n"
  )
  for name, flag in (('plain', 'cfg.py'), ('with_arg', 'cfg.py:small')):
    runs.register(
      f'results/x/full/{name}',
      ['python', '-m', 'x', f'--workdir=results/x/full/{name}', f'--config={flag}'],
      root=tmp_path,
    )
  found = {r.name: runs.run_status(r, tmp_path) for r in runs.load_runs(tmp_path)}
  assert found['plain']['state'] == 'not started'
  assert (found['plain']['num_iterations'], found['with_arg']['num_iterations']) == (
    123,
    7,
  )
