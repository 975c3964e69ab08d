"""What a run records about the code it ran from."""

import shutil
import subprocess

import pytest

from experiments.common import run_info


@pytest.mark.skipif(shutil.which('git') is None, reason='needs git')
def test_git_state_names_the_commit_and_whether_the_code_differs(tmp_path):
  repo, elsewhere = tmp_path / 'repo', tmp_path / 'elsewhere'
  repo.mkdir(), elsewhere.mkdir()

  def git(*args):
    subprocess.run(
      ['git', '-c', 'user.name=t', '-c', 'user.email=t@example.com', *args],
      cwd=repo,
      check=True,
      capture_output=True,
    )

  git('init', '-q')
  (repo / 'train.py').write_text('a = 1\n')
  git('add', 'train.py')
  git('commit', '-q', '-m', 'one')
  head = subprocess.run(
    ['git', 'rev-parse', 'HEAD'], cwd=repo, capture_output=True, text=True
  ).stdout.strip()
  assert run_info.git_state(repo) == {'git_commit': head, 'git_dirty': False}
  # A run's own records under results/ do not make the code dirty...
  (repo / 'results' / 'run').mkdir(parents=True)
  (repo / 'results' / 'run' / 'metrics.jsonl').write_text('{}\n')
  assert run_info.git_state(repo)['git_dirty'] is False
  # ...changed code does.
  (repo / 'train.py').write_text('a = 2\n')
  assert run_info.git_state(repo) == {'git_commit': head, 'git_dirty': True}
  assert run_info.git_state(elsewhere) == {'git_commit': '', 'git_dirty': None}


def test_run_info_records_the_commit():
  info = run_info.run_info()
  assert info['git_commit'] == run_info.git_state()['git_commit']
  assert 'git_dirty' in info


def test_run_info_records_jaxlib_and_xla_flags(monkeypatch):
  import jaxlib

  monkeypatch.setenv('XLA_FLAGS', '--xla_cpu_experimental_ynn_fusion_type=')
  info = run_info.run_info()
  assert info['jaxlib'] == jaxlib.__version__
  assert info['xla_flags'] == '--xla_cpu_experimental_ynn_fusion_type='
