"""The second run of ProtoNet's reference protocol, registered from the first's record."""

import json
import pathlib
import shutil

import pytest

from experiments import runs
from experiments.omniglot import second_run

ROOT = pathlib.Path(__file__).parents[2]
FULL = pathlib.Path('results', 'omniglot', 'full')


def test_the_command_is_the_one_the_h100_second_run_was_registered_with():
  (first,) = [
    r for r in runs.load_runs(ROOT) if r.workdir == FULL / 'protonet_5w5s_select_gpu'
  ]
  record = json.loads((ROOT / first.workdir / 'test_step23000.json').read_text())
  workdir = FULL / 'protonet_5w5s_trainval_gpu'
  registered = json.loads((ROOT / workdir / 'RUN.json').read_text())
  assert second_run.second_run_command(first, record, workdir) == registered['command']


def test_register_writes_the_second_run_beside_the_first_and_refuses_twice(tmp_path):
  first = FULL / 'protonet_5w5s_select_gpu'
  (tmp_path / first).mkdir(parents=True)
  for name in ('RUN.json', 'test_step23000.json'):
    shutil.copy(ROOT / first / name, tmp_path / first / name)
  path = second_run.register_second_run(first, root=tmp_path)
  entry = json.loads(path.read_text())
  assert entry['workdir'] == str(FULL / 'protonet_5w5s_trainval_gpu')
  assert entry['backend'] == 'gpu'
  assert entry['command'][-1] == '--config.num_iterations=22800'
  with pytest.raises(ValueError, match='registered already'):
    second_run.register_second_run(first, root=tmp_path)


def test_a_first_run_without_its_record_is_refused(tmp_path):
  first = FULL / 'x_select'
  runs.register(
    first,
    ['python', '-m', 'experiments.omniglot.main', f'--workdir={first}'],
    root=tmp_path,
  )
  with pytest.raises(ValueError, match='has not finished'):
    second_run.register_second_run(first, root=tmp_path)
  (tmp_path / first / 'test_step10.json').write_text(json.dumps({'test': {}}))
  with pytest.raises(ValueError, match='recorded no early_stopping'):
    second_run.register_second_run(first, root=tmp_path)
  with pytest.raises(ValueError, match='not a registered run'):
    second_run.register_second_run(FULL / 'y_select', root=tmp_path)


def test_the_first_runs_own_length_and_split_are_replaced():
  first = runs.Run(
    'x_select',
    FULL / 'x_select',
    (
      'python',
      '--workdir=results/omniglot/full/x_select',
      '--config.num_iterations=500',
      '--config.early_stopping_patience=3',
      '--config.eval_every=5',
    ),
  )
  record = {'early_stopping': {'reference_trainval_iterations': 45}}
  command = second_run.second_run_command(first, record, FULL / 'x_trainval')
  assert command == [
    'python',
    '--workdir=results/omniglot/full/x_trainval',
    '--config.eval_every=5',
    '--config.data.train_split=trainval',
    '--config.early_stopping_patience=0',
    '--config.num_iterations=45',
  ]


def test_print_workdir_names_the_second_run_and_registers_nothing(capsys):
  first = FULL / 'protonet_5w1s_select_gpu'
  assert second_run.main(['--print-workdir', str(first)]) == 0
  assert capsys.readouterr().out.strip() == str(FULL / 'protonet_5w1s_trainval_gpu')
  assert not (runs.ROOT / FULL / 'protonet_5w1s_trainval_gpu' / runs.RUN_FILE).exists()
  assert second_run.main(['--print-workdir', str(FULL / 'protonet_5w1s_gpu')]) == 1
  assert "must contain '_select'" in capsys.readouterr().err
