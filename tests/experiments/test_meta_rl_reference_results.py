"""experiments.meta_rl.reference_results against a small git repository laid out as
cbfinn/maml_rl's ``icml/`` folder."""

import json
import pickle
import subprocess

import numpy as np
import pytest

from experiments.meta_rl import reference_results


@pytest.fixture
def repo(tmp_path):
  rng = np.random.default_rng(0)
  (tmp_path / 'icml').mkdir()
  expected = {}
  for policy in reference_results.POLICIES:
    steps = 1 if policy == 'oracle' else 4
    returns = rng.normal(-100, 30, size=(steps, 5))
    expected[policy] = returns.mean(axis=1)
    # Lists of floats in a protocol-2 pickle, as the reference's Python 2 wrote.
    path = tmp_path / 'icml' / f'icml_cheetah_results_{policy}.pkl'
    path.write_bytes(pickle.dumps({'task_avg_returns': returns.tolist()}, protocol=2))
  git = ['git', '-C', str(tmp_path), '-c', 'user.name=t', '-c', 'user.email=t@t']
  subprocess.run([*git, 'init', '-q'], check=True)
  subprocess.run([*git, 'add', '.'], check=True)
  subprocess.run([*git, 'commit', '-q', '-m', 'results'], check=True)
  return tmp_path, expected


def test_means_over_tasks_per_step_and_the_commit(repo, tmp_path_factory):
  path, expected = repo
  out = tmp_path_factory.mktemp('out') / 'reference_results.json'
  assert reference_results.main([f'--repo={path}', f'--out={out}']) == 0
  written = json.loads(out.read_text())
  head = subprocess.run(
    ['git', '-C', str(path), 'rev-parse', 'HEAD'], capture_output=True, text=True
  )
  assert written['commit'] == head.stdout.strip()
  for policy, means in expected.items():
    np.testing.assert_allclose(written['policies'][policy]['mean'], means, atol=0.005)
    assert written['policies'][policy]['num_tasks'] == 5
  with pytest.raises(FileExistsError, match='remove it first'):
    reference_results.main([f'--repo={path}', f'--out={out}'])


def test_an_unknown_family_is_refused(repo):
  with pytest.raises(ValueError, match="unknown family 'walker'"):
    reference_results.reference_results(str(repo[0]), 'walker')
