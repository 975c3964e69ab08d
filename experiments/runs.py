"""Long runs that survive preemption and a change of machine.

A long run is registered by a ``RUN.json`` in its workdir, committed under
``results/<experiment>/full/<run>/``: the run's name, workdir and command, e.g.::

  python -m experiments.runs register results/omniglot/full/maml_5w1s -- \\
      python -m experiments.omniglot.main --workdir=results/omniglot/full/maml_5w1s \\
      --config=experiments/omniglot/configs/maml.py:5w1s

The runner keeps only the latest checkpoint of a registered workdir (a Conv4 and its
Adam state are a few MB), and ``.gitignore`` lets checkpoints under
``results/*/full/`` through, so committing the workdir carries the run to any clone.
On any machine, from the repository root::

  python -m experiments.runs status     # each run's step, training time, time to finish
  python -m experiments.runs continue   # every unfinished run (or: continue NAME ...), in the background

``continue`` starts each run's recorded command from the repository root under
``nohup`` and ``nice`` (and, on Linux, with its session's scheduling group niced too:
see ``lower_session_priority``), appending to the workdir's ``log.txt``; the runner resumes
from the checkpoint exactly (``tests/experiments/test_runs.py`` checks a run continued
on a fresh clone against an uninterrupted one). A process training in a workdir holds
the lock ``run.lock`` in it, so a run is never started twice, and ``status`` shows it
as running; stop it with ``kill PID`` (SIGTERM), which exits after any checkpoint
being written, like Ctrl-C (a background job ignores SIGINT). ``prune`` deletes the checkpoints of finished runs; their results stay.

A run registered with ``--backend gpu`` (say) is one whose time and numerics belong
to that hardware: ``continue`` leaves it alone on any other backend (``status``
says what it waits for) unless given ``--any-backend``, so that a plain
``continue`` on a CPU does not finish a GPU run there.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import errno
import fcntl
import importlib.util
import json
import os
import pathlib
import shlex
import shutil
import socket
import subprocess
import sys
import time
from typing import NamedTuple

from experiments.common.workdir import completed_result

ROOT = pathlib.Path(__file__).parents[1]
RUN_FILE = 'RUN.json'
LOCK_FILE = 'run.lock'
LOG_FILE = 'log.txt'
# The file orbax's JsonSave writes in a checkpoint's item folder.
_PROGRESS_FILE = pathlib.Path('progress', 'metadata')
BACKENDS = ('cpu', 'gpu', 'tpu')


class Run(NamedTuple):
  """A registered run: ``workdir`` relative to the repository root; ``backend``,
  if set, the JAX backend it must train on (``jax.default_backend()``'s name)."""

  name: str
  workdir: pathlib.Path
  command: tuple[str, ...]
  backend: str | None = None


class WorkdirBusyError(RuntimeError):
  """Another process is training in this workdir."""


def is_registered(workdir: str | pathlib.Path) -> bool:
  """Whether ``workdir`` holds a registered long run (its ``RUN.json``)."""
  return (pathlib.Path(workdir) / RUN_FILE).exists()


def checkpoints_to_keep(workdir: str | pathlib.Path) -> int:
  """``Checkpointer``'s default ``max_to_keep``: 1 for a registered run, which
  carries its latest checkpoint in git, else 2."""
  return 1 if is_registered(workdir) else 2


@contextlib.contextmanager
def workdir_lock(workdir: str | pathlib.Path):
  """Holds ``workdir/run.lock`` for the block; raises ``WorkdirBusyError`` if another
  process holds it. The lock goes with the process, however it ends."""
  path = pathlib.Path(workdir)
  path.mkdir(parents=True, exist_ok=True)
  with open(path / LOCK_FILE, 'a+') as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      raise WorkdirBusyError(
        f'another process is training in {path} ({f.read().strip() or "pid unknown"});'
        ' wait for it to end, or stop it, before starting this run again.'
      ) from None
    f.truncate(0)
    f.write(f'pid {os.getpid()} on {socket.gethostname()}\n')
    f.flush()
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def holder(workdir: str | pathlib.Path) -> str | None:
  """Who holds ``workdir``'s lock (``'pid 123 on host'``), or None when no one."""
  path = pathlib.Path(workdir) / LOCK_FILE
  if not path.exists():
    return None
  with open(path) as f:
    try:
      fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
      return f.read().strip() or 'pid unknown'
    fcntl.flock(f, fcntl.LOCK_UN)
  return None


def load_runs(root: str | pathlib.Path = ROOT) -> list[Run]:
  """Every run registered under ``root/results``, by workdir."""
  root = pathlib.Path(root)
  found = []
  for path in sorted((root / 'results').glob(f'**/{RUN_FILE}')):
    entry = json.loads(path.read_text())
    found.append(
      Run(
        entry['name'],
        pathlib.Path(entry['workdir']),
        tuple(entry['command']),
        entry.get('backend'),
      )
    )
  return found


def checkpoint_steps(workdir: str | pathlib.Path) -> list[int]:
  """The steps of the finished checkpoints in ``workdir/checkpoints``, ascending.

  Orbax writes a checkpoint in a temporary folder and renames it to its step once
  complete, so a folder named by a number is a whole checkpoint.
  """
  path = pathlib.Path(workdir) / 'checkpoints'
  if not path.is_dir():
    return []
  return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit())


def saved_progress(workdir: str | pathlib.Path, step: int) -> dict:
  """The progress record saved with the checkpoint at ``step``; {} if none."""
  path = pathlib.Path(workdir) / 'checkpoints' / str(step) / _PROGRESS_FILE
  try:
    return json.loads(path.read_text())
  except (OSError, json.JSONDecodeError):
    return {}


def _command_value(command: tuple[str, ...], flag: str) -> str | None:
  for arg in command:
    if arg.startswith(f'{flag}='):
      return arg.split('=', 1)[1]
  return None


def config_from_command(command: tuple[str, ...], root=ROOT):
  """The config that ``--config=PATH[:ARG]`` in ``command`` names (a module with
  ``get_config``, relative to ``root``), or None if the command names no such file."""
  flag = _command_value(tuple(command), '--config')
  if flag is None:
    return None
  path, _, arg = flag.partition(':')
  path = pathlib.Path(root) / path
  if not path.is_file():
    return None
  spec = importlib.util.spec_from_file_location(f'_run_config_{path.stem}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def seconds_per_step(progress: dict, step: int, seconds: float | None) -> float | None:
  """Training seconds per step: of the latest segment (the one that wrote the
  checkpoint, on today's machine) when the progress record has it, else of all
  steps (a run whose earlier segments kept no time would look too fast)."""
  segment = progress.get('segment') or {}
  done = step - segment.get('from_step', step)
  if done > 0 and segment.get('seconds'):
    return segment['seconds'] / done
  return seconds / step if seconds else None


def run_status(run: Run, root: str | pathlib.Path = ROOT) -> dict:
  """Where ``run`` stands: its state, step, training time and time to finish.

  ``state`` is 'done' (its test results are written), 'running' (a process holds
  its workdir), 'stopped' or 'not started'. ``seconds_left`` extrapolates the
  training time per step (``seconds_per_step``, compilation included) to the
  remaining steps.
  """
  workdir = pathlib.Path(root) / run.workdir
  steps = checkpoint_steps(workdir)
  step = steps[-1] if steps else 0
  progress = saved_progress(workdir, step) if steps else {}
  total = progress.get('num_iterations')
  if total is None:
    total = _command_value(run.command, '--config.num_iterations')
    if total is None and (workdir / 'config.json').exists():
      total = json.loads((workdir / 'config.json').read_text()).get('num_iterations')
    if total is None:  # not started yet: the config file the command names
      config = config_from_command(run.command, root)
      total = None if config is None else config.get('num_iterations')
    total = int(total) if total is not None else None
  seconds = progress.get('train_seconds')
  if seconds is None and (workdir / 'timing.jsonl').exists():
    lines = (workdir / 'timing.jsonl').read_text().splitlines()
    seconds = sum(json.loads(line)['seconds'] for line in lines if line.strip())
  result = completed_result(workdir, total)
  busy = holder(workdir)
  if result:
    state = 'done'
    # Its checkpoints may be pruned; the result names the step it reached.
    record = json.loads(result.read_text())
    step = max(step, record.get('iterations', record.get('updates', step)))
    total = total or step
    seconds = seconds if seconds is not None else record.get('train_seconds_total')
  elif busy:
    state = 'running'
  else:
    state = 'stopped' if step else 'not started'
  left = None
  if total and step and not result:
    per_step = seconds_per_step(progress, step, seconds)
    left = None if per_step is None else max(total - step, 0) * per_step
  return {
    'name': run.name,
    'workdir': str(run.workdir),
    'state': state,
    'held_by': busy,
    'step': step,
    'num_iterations': total,
    'train_seconds': seconds,
    'seconds_left': left,
    'result': str(result.relative_to(root)) if result else None,
    'git_commit': progress.get('git_commit'),
    'backend': run.backend,
  }


def _duration(seconds: float | None) -> str:
  if seconds is None:
    return '?'
  for unit, size in (('days', 86400), ('h', 3600), ('min', 60)):
    if seconds >= size:
      return f'{seconds / size:.1f} {unit}'
  return f'{seconds:.0f} s'


def format_status(statuses: list[dict]) -> str:
  """A plain-text table of ``run_status`` results, one run a row."""
  header = ('run', 'state', 'step', 'training time', 'time to finish', 'workdir')
  rows = [header]
  for s in statuses:
    total = s['num_iterations']
    step = f'{s["step"]:,}/{total:,}' if total else f'{s["step"]:,}/?'
    if total:
      step += f' ({100 * s["step"] / total:.0f}%)'
    left = '-' if s['state'] == 'done' else _duration(s['seconds_left'])
    state = s['state'] + (f' ({s["held_by"]})' if s['state'] == 'running' else '')
    if s.get('backend') and s['state'] != 'done':
      state += f' (on {s["backend"]})'
    rows.append(
      (s['name'], state, step, _duration(s['train_seconds']), left, s['workdir'])
    )
  widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
  lines = ['  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
  for s in statuses:
    if s['state'] == 'done' and s['result']:
      lines.append(f'{s["name"]}: results in {s["result"]}')
  return '\n'.join(lines) + '\n'


# The nice level of a background run, of its process and of its session's group.
NICE = 10


def lower_session_priority(pid: int, nice: int = NICE) -> bool:
  """Sets the nice level of the scheduling group of ``pid``'s session; False where
  the system has none (not Linux, or no autogroup scheduling).

  With Linux's autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``)
  the CPU is shared equally between sessions, and ``nice`` orders processes only
  within one. A run started in a session of its own would then take as much CPU as
  the user's shell and its test suites, however niced, unless its session's group
  is niced too (``/proc/PID/autogroup``, sched(7)).
  """
  for attempt in range(2):
    try:
      with open(f'/proc/{pid}/autogroup', 'w') as f:
        f.write(str(nice))
      return True
    except OSError as e:
      # The kernel takes one such write per 100 ms from a non-root user (EAGAIN),
      # which two runs started together would hit.
      if e.errno != errno.EAGAIN or attempt:
        return False
      time.sleep(0.11)
  return False


def start(run: Run, root: str | pathlib.Path = ROOT) -> subprocess.Popen:
  """Starts ``run``'s command in the background from ``root``: nohup, nice, its
  output appended to the workdir's ``log.txt``, in a session of its own whose
  scheduling group is niced as well (``lower_session_priority``)."""
  root = pathlib.Path(root)
  command = list(run.command)
  if command[0] in ('python', 'python3'):
    command[0] = sys.executable
  prefix = [tool for tool in ('nohup',) if shutil.which(tool)]
  if shutil.which('nice'):
    prefix += ['nice', '-n', str(NICE)]
  workdir = root / run.workdir
  workdir.mkdir(parents=True, exist_ok=True)
  from experiments.common.run_info import git_state

  code = git_state(root)
  with open(workdir / LOG_FILE, 'a') as log:
    log.write(
      f'# continued by `python -m experiments.runs continue` on '
      f'{socket.gethostname()} at '
      f'{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}'
      f', commit {code["git_commit"] or "?"}'
      f'{" with uncommitted changes" if code["git_dirty"] else ""}\n'
      f'+ {shlex.join(run.command)}\n'
    )
    log.flush()
    proc = subprocess.Popen(
      prefix + command,
      cwd=root,
      stdin=subprocess.DEVNULL,
      stdout=log,
      stderr=subprocess.STDOUT,
      start_new_session=True,
    )
  lower_session_priority(proc.pid)
  return proc


def current_backend() -> str:
  """The JAX backend this machine trains on (``'cpu'``, ``'gpu'``, ``'tpu'``)."""
  import jax

  return jax.default_backend()


def continue_runs(
  root: str | pathlib.Path = ROOT,
  *,
  wait: bool = False,
  names: list[str] | None = None,
  any_backend: bool = False,
  out=sys.stdout,
) -> int:
  """Starts every registered run (or those in ``names``) that is neither done nor
  running, and whose ``backend``, if set, is this machine's (or ``any_backend``);
  returns how many failed (with ``wait``: exited non-zero)."""
  started = []
  runs = load_runs(root)
  unknown = sorted(set(names or ()) - {run.name for run in runs})
  if unknown:
    raise SystemExit(
      f'no registered run named {", ".join(unknown)}; '
      f'registered: {", ".join(r.name for r in runs) or "none"}.'
    )
  for run in runs:
    if names and run.name not in names:
      continue
    status = run_status(run, root)
    if status['state'] in ('done', 'running'):
      print(f'{run.name}: {status["state"]}, not started', file=out)
      continue
    here = current_backend() if run.backend and not any_backend else None
    if here is not None and run.backend != here:
      print(
        f"{run.name}: registered to train on {run.backend}, and this machine's "
        f'backend is {here}; not started (--any-backend starts it here, '
        'mixing hardware within the run).',
        file=out,
      )
      continue
    proc = start(run, root)
    print(
      f'{run.name}: started from step {status["step"]} (pid {proc.pid}), '
      f'logging to {run.workdir / LOG_FILE}',
      file=out,
    )
    started.append((run, proc))
  failed = 0
  if wait:
    for run, proc in started:
      code = proc.wait()
      print(f'{run.name}: exited with status {code}', file=out)
      failed += code != 0
  return failed


def register(
  workdir: str | pathlib.Path,
  command: list[str],
  *,
  name: str | None = None,
  backend: str | None = None,
  root: str | pathlib.Path = ROOT,
) -> pathlib.Path:
  """Writes ``workdir/RUN.json`` for ``command``; returns its path.

  ``workdir`` must lie under ``root/results`` where git keeps checkpoints (see
  ``.gitignore``), and ``command`` must train in it (``--workdir=<workdir>``).
  """
  root = pathlib.Path(root).absolute()
  path = pathlib.Path(workdir)
  absolute = path if path.is_absolute() else root / path
  relative = absolute.relative_to(root)
  if relative.parts[:1] != ('results',):
    raise ValueError(f'{workdir}: a long run lives under results/, to travel in git.')
  given = _command_value(tuple(command), '--workdir')
  if given is None or pathlib.Path(given) != relative:
    raise ValueError(
      f"the command must train in the run's workdir: pass --workdir={relative} "
      f'(it has {"--workdir=" + given if given else "no --workdir"}).'
    )
  probe = str(relative / 'checkpoints' / '1' / 'x')
  ignored = subprocess.run(
    ['git', 'check-ignore', '-q', probe], cwd=root, capture_output=True
  )
  if ignored.returncode == 0:
    raise ValueError(
      f'git ignores {relative}/checkpoints (.gitignore), so the checkpoint would '
      'not travel with the repository; put the run under results/<experiment>/full/.'
    )
  if backend is not None and backend not in BACKENDS:
    raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}.')
  absolute.mkdir(parents=True, exist_ok=True)
  entry = {
    'name': name or relative.name,
    'workdir': str(relative),
    'command': list(command),
  }
  if backend is not None:
    entry['backend'] = backend
  out = absolute / RUN_FILE
  out.write_text(json.dumps(entry, indent=2) + '\n')
  return out


def prune(root: str | pathlib.Path = ROOT, out=sys.stdout) -> None:
  """Deletes the checkpoints of finished runs (their results stay)."""
  for run in load_runs(root):
    status = run_status(run, root)
    checkpoints = pathlib.Path(root) / run.workdir / 'checkpoints'
    if status['state'] == 'done' and checkpoints.exists():
      shutil.rmtree(checkpoints)
      print(f'{run.name}: removed {run.workdir / "checkpoints"}', file=out)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    prog='python -m experiments.runs',
    description='List, continue and register the long runs under results/.',
  )
  parser.add_argument('--root', default=str(ROOT), help='repository root')
  commands = parser.add_subparsers(dest='action', required=True)
  commands.add_parser('status', help='each run: state, step, time to finish')
  cont = commands.add_parser('continue', help='start unfinished runs in background')
  cont.add_argument('--wait', action='store_true', help='wait for them to end')
  cont.add_argument('names', nargs='*', help='only these runs (default: all)')
  cont.add_argument(
    '--any-backend',
    action='store_true',
    help="also start runs registered for another backend than this machine's",
  )
  commands.add_parser('prune', help='delete the checkpoints of finished runs')
  reg = commands.add_parser('register', help='register a run: WORKDIR -- COMMAND')
  reg.add_argument('workdir')
  reg.add_argument('--name')
  reg.add_argument(
    '--backend', choices=BACKENDS, help='the only backend `continue` trains it on'
  )
  reg.add_argument('run_command', nargs=argparse.REMAINDER)
  args = parser.parse_args(argv)
  if args.action == 'status':
    print(format_status([run_status(r, args.root) for r in load_runs(args.root)]))
  elif args.action == 'continue':
    failed = continue_runs(
      args.root, wait=args.wait, names=args.names, any_backend=args.any_backend
    )
    return 1 if failed else 0
  elif args.action == 'prune':
    prune(args.root)
  else:
    command = (
      args.run_command[1:] if args.run_command[:1] == ['--'] else args.run_command
    )
    if not command:
      parser.error('register needs the command after --')
    print(
      register(
        args.workdir, command, name=args.name, backend=args.backend, root=args.root
      )
    )
  return 0


if __name__ == '__main__':
  sys.exit(main())
