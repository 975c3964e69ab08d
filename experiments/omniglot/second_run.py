"""Registers the second run of ProtoNet's reference protocol from its first.

  python -m experiments.omniglot.second_run results/omniglot/full/protonet_5w1s_select
  python -m experiments.omniglot.second_run --print-workdir WORKDIR  # registers nothing

The first run (``protonet_full.py``) early-stops on validation; its
``test_step<N>.json`` records ``early_stopping.reference_trainval_iterations``. The
second trains anew on the training and validation characters for that many episodes
and is the reported model. This registers it (``experiments.runs.register``) beside
the first, ``_select`` in the name becoming ``_trainval``, with the first's command,
backend and these overrides::

  --config.data.train_split=trainval --config.early_stopping_patience=0
  --config.num_iterations=<reference_trainval_iterations>

and prints the new ``RUN.json``'s path, which ``python -m experiments.runs continue``
then trains. ``--print-workdir`` prints only the second run's workdir (the one place
that names it, for ``benchmarks/device_session.sh``), or fails for a first run's
name without ``_select``.
"""

from __future__ import annotations

import json
import pathlib
import sys

from experiments import runs
from experiments.common.workdir import completed_result


def second_run_command(first: runs.Run, record: dict, workdir: pathlib.Path) -> list:
  """The first run's command, training in ``workdir`` on train + val for the length
  its early-stopping record chose (its own values of these three flags dropped)."""
  iterations = record.get('early_stopping', {}).get('reference_trainval_iterations')
  if not iterations:
    raise ValueError(
      f'{first.workdir} recorded no early_stopping.reference_trainval_iterations: '
      'its config must early-stop on validation (protonet_full.py), and it must '
      'have stopped.'
    )
  overridden = (
    '--config.data.train_split=',
    '--config.early_stopping_patience=',
    '--config.num_iterations=',
  )
  command = [
    f'--workdir={workdir}' if a.startswith('--workdir=') else a
    for a in first.command
    if not a.startswith(overridden)
  ]
  return [
    *command,
    '--config.data.train_split=trainval',
    '--config.early_stopping_patience=0',
    f'--config.num_iterations={iterations}',
  ]


def second_workdir(first_workdir: str | pathlib.Path) -> pathlib.Path:
  """The second run's workdir: ``first_workdir`` with ``_select`` in its name
  becoming ``_trainval``."""
  first_workdir = pathlib.Path(first_workdir)
  if '_select' not in first_workdir.name:
    raise ValueError(
      f"{first_workdir}: the first run's name must contain '_select' (it becomes "
      "'_trainval')."
    )
  return first_workdir.with_name(first_workdir.name.replace('_select', '_trainval'))


def register_second_run(
  first_workdir: str | pathlib.Path, root: str | pathlib.Path = runs.ROOT
) -> pathlib.Path:
  """Registers the second run of the first run in ``first_workdir``; returns the
  path of its ``RUN.json``."""
  root = pathlib.Path(root).absolute()
  first_workdir = pathlib.Path(first_workdir)
  matches = [r for r in runs.load_runs(root) if r.workdir == first_workdir]
  if not matches:
    raise ValueError(f'{first_workdir} is not a registered run (no RUN.json).')
  first = matches[0]
  record = completed_result(root / first_workdir, None)
  if record is None:
    raise ValueError(f'{first_workdir} has not finished: it has no test_step<N>.json.')
  workdir = second_workdir(first_workdir)
  if (root / workdir / runs.RUN_FILE).exists():
    raise ValueError(f'{workdir} is registered already.')
  command = second_run_command(first, json.loads(record.read_text()), workdir)
  return runs.register(workdir, command, backend=first.backend, root=root)


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  print_only = argv[:1] == ['--print-workdir']
  argv = argv[1:] if print_only else argv
  if len(argv) != 1:
    print(__doc__, file=sys.stderr)
    return 2
  try:
    print(second_workdir(argv[0]) if print_only else register_second_run(argv[0]))
  except ValueError as error:
    print(error, file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
