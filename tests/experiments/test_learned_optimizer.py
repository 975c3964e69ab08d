"""The learned-optimizer experiment: a smoke run, exact resumption, bad configs,
the README table against the committed run, and a smoke run of the MNIST task on a
synthetic IDX folder."""

import json
import pathlib

import chex
import jax
import ml_collections
import numpy as np
import pytest
from run_checks import assert_log_names_commit, log_to, readme_block

from experiments import runs
from experiments.common.workdir import completed_result
from experiments.learned_optimizer import report, train
from experiments.learned_optimizer.configs import default, mnist, smoke, smoke_mnist
from jmeta import learned_optimizers as lopt
from jmeta.data import mnist as mnist_data


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('lopt') / 'run'
  with log_to(workdir.parent / 'log.txt'):
    out = train.train_and_evaluate(smoke.get_config(), str(workdir))
  return out, workdir


def test_smoke_run_writes_every_output(smoke_run):
  out, workdir = smoke_run
  for name in (*train.OUTPUTS, 'metrics.jsonl', 'timing.jsonl', 'config.json'):
    assert (workdir / name).stat().st_size > 0, name
  assert list((workdir / 'tensorboard').glob('events.out.tfevents.*'))
  records = [json.loads(line) for line in (workdir / 'metrics.jsonl').open()]
  assert [r['step'] for r in records] == [2, 4, 6]
  saved = json.loads((workdir / 'results.json').read_text())
  assert_log_names_commit(workdir.parent / 'log.txt', saved['run']['git_commit'])
  assert saved['run']['command'] and 'git_commit' in saved['run']
  assert set(saved['test']) == {'learned', 'sgd', 'adam'}
  for r in saved['test'].values():
    assert np.isfinite(r['final_loss_mean']) and len(r['mean_curve']) == 7
  assert saved['tuning']['sgd']['best_learning_rate'] in (0.01, 0.1)
  # What experiments.runs needs of a registered run: its length, and that it ended.
  assert saved['updates'] == smoke.get_config().num_updates
  assert completed_result(workdir, saved['updates']) == workdir / 'results.json'
  assert completed_result(workdir, saved['updates'] + 1) is None
  step = runs.checkpoint_steps(workdir)[-1]
  assert runs.saved_progress(workdir, step)['num_iterations'] == saved['updates']
  assert '| SGD | ' in (workdir / 'results.md').read_text()
  with pytest.raises(FileExistsError, match='does not overwrite'):
    train.train_and_evaluate(smoke.get_config(), str(workdir))


def held_out_test_of(rule, config: dict, meta_params) -> dict:
  """The run's held-out comparison of the learned rule, recomputed."""
  config = ml_collections.ConfigDict(config)
  problems = train.make_problems(config)
  unrolls = train.unrolls_fn(
    problems, jax.random.key(config.eval.seed), config.eval.num_tasks, True
  )
  out = jax.jit(lambda mp: unrolls.run(lopt.as_optimizer(rule, mp)))(meta_params)
  return train.summarize(*jax.tree.map(lambda x: np.asarray(x, np.float64), out))


def test_the_saved_rule_loads_and_reproduces_the_run_s_test(smoke_run, tmp_path):
  out, workdir = smoke_run
  rule, config, meta_params = train.load_rule(workdir)
  chex.assert_trees_all_equal(meta_params, jax.device_get(out['state'].meta_params))
  assert held_out_test_of(rule, config, meta_params) == out['test']['learned']
  with pytest.raises(FileNotFoundError, match='not a finished learned-optimizer run'):
    train.load_rule(tmp_path)


def test_the_committed_rule_reproduces_the_committed_test():
  run = pathlib.Path(__file__).parents[2] / 'results/learned_optimizer/quadratic'
  rule, config, meta_params = train.load_rule(run)
  committed = json.loads((run / 'results.json').read_text())
  assert held_out_test_of(rule, config, meta_params) == committed['test']['learned']
  size = sum(np.size(x) for x in jax.tree.leaves(meta_params))
  assert size == committed['meta_parameters']
  readme = (run.parents[2] / 'README.md').read_text()
  assert f'quadratic/rule.msgpack`,\n{size:,} meta-parameters;' in readme


class Stop(Exception):
  pass


def test_a_stopped_run_resumes_to_the_same_meta_params(
  smoke_run, tmp_path, monkeypatch
):
  out, _ = smoke_run
  add_scalars = train.records.add_scalars

  def stop_at_step_4(writer, record, walltime=None):
    if record['step'] == 4:
      raise Stop  # after the checkpoint at meta-step 3
    add_scalars(writer, record, walltime)

  monkeypatch.setattr(train.records, 'add_scalars', stop_at_step_4)
  with pytest.raises(Stop):
    train.train_and_evaluate(smoke.get_config(), str(tmp_path))
  monkeypatch.setattr(train.records, 'add_scalars', add_scalars)
  resumed = train.train_and_evaluate(smoke.get_config(), str(tmp_path))
  assert resumed['train']['resumed_from'] == 3
  jax.tree.map(
    np.testing.assert_array_equal,
    resumed['state'].meta_params,
    out['state'].meta_params,
  )
  records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').open()]
  assert [r['step'] for r in records] == [2, 4, 6]


@pytest.mark.parametrize(
  'field, value, match',
  [
    ('rule', 'gru', "config.rule must be one of .* got 'gru'"),
    ('estimator', 'reinforce', 'config.estimator must be one of'),
    ('truncation', 4, 'truncation length 4 does not divide the unroll of 6'),
    ('steps', -1, 'config.steps must be a positive int'),
  ],
)
def test_bad_configs_are_named(field, value, match, tmp_path):
  config = smoke.get_config()
  config[field] = value
  with pytest.raises(ValueError, match=match):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_default_config_is_the_papers_setting():
  config = default.get_config()
  assert (config.dim, config.steps, config.truncation) == (10, 100, 20)
  assert config.rule == 'lstm' and config.estimator == 'truncated_backprop'
  assert set(config.tune.baselines) == {'sgd', 'momentum', 'nag', 'rmsprop', 'adam'}


def test_readme_table_matches_the_committed_run():
  root = pathlib.Path(__file__).parents[2]
  readme = (root / 'README.md').read_text()
  begin = (
    '<!-- generated by `python -m experiments.learned_optimizer.report '
    'results/learned_optimizer/quadratic`; do not edit by hand -->\n'
  )
  section = readme.split(begin, 1)[1].split(
    '<!-- end generated learned_optimizer -->', 1
  )[0]
  run = root / 'results' / 'learned_optimizer' / 'quadratic'
  assert section == report.table(run)
  results = json.loads((run / 'results.json').read_text())
  assert results['run']['git_commit'] and results['run']['git_dirty'] is False
  assert results['config']['steps'] == 100 and results['config']['dim'] == 10


@pytest.fixture(scope='module')
def mnist_smoke_run(tmp_path_factory):
  """The MNIST smoke config on 2,010 random 28x28 images (split 10 / 2,000),
  through the real loader with the synthetic files' sums registered."""
  root = tmp_path_factory.mktemp('lopt_mnist')
  rng = np.random.default_rng(0)
  arrays = (
    rng.integers(0, 256, (2_010, 28, 28), dtype=np.uint8),
    rng.integers(0, 10, (2_010,), dtype=np.uint8),
  )
  sums = {}
  for stem, array, magic in zip(mnist_data.IDX_FILES['test'], arrays, (2051, 2049)):
    raw = np.asarray([magic, *array.shape], '>u4').tobytes() + array.tobytes()
    (root / stem).write_bytes(raw)
    sums[stem] = mnist_data.hashlib.sha256(raw).hexdigest()
  config = smoke_mnist.get_config()
  config.mnist.idx_dir = str(root)
  config.mnist.data_dir = str(root / 'tfds')
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(mnist_data, 'IDX_SHA256', sums)
    out = train.train_and_evaluate(config, str(root / 'run'))
  return out, root / 'run'


def test_mnist_smoke_run_reports_training_and_heldout_losses(mnist_smoke_run):
  out, workdir = mnist_smoke_run
  saved = json.loads((workdir / 'results.json').read_text())
  assert saved['problems'] == {
    'train': 'mlp4_sigmoid',
    'test': 'mlp4_sigmoid',
    'test_steps': 4,
  }
  for r in saved['test'].values():
    assert len(r['mean_curve']) == 5
    for key in ('final_loss_mean', 'train_loss_mean', 'heldout_loss_mean'):
      assert np.isfinite(r[key]), key
  table = (workdir / 'results.md').read_text()
  assert 'loss on the held-out images after 4 steps' in table
  assert 'a split of the MNIST test partition' in table
  assert (workdir / 'loss_curves.png').stat().st_size > 0


def test_mnist_configs_are_the_papers_setting_and_its_variants():
  config = mnist.get_config()
  assert (config.task, config.steps, config.truncation) == ('mnist', 100, 20)
  assert tuple(config.mnist.hidden_sizes) == (20,) and config.mnist.batch_size == 128
  assert config.mnist.activation == 'sigmoid' and config.first_order
  assert mnist.get_config('steps200').eval.steps == 200
  assert tuple(mnist.get_config('two_layers').eval.hidden_sizes) == (20, 20)
  assert tuple(mnist.get_config('hidden40').eval.hidden_sizes) == (40,)
  assert mnist.get_config('relu').eval.activation == 'relu'
  with pytest.raises(ValueError, match='setting must be one of'):
    mnist.get_config('cifar')


def test_an_mnist_task_without_its_block_is_named(tmp_path):
  config = smoke.get_config()
  config.task = 'mnist'
  with pytest.raises(ValueError, match='no config.mnist block'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))


def test_readme_mnist_table_matches_the_committed_run():
  root = pathlib.Path(__file__).parents[2]
  section = readme_block(
    'python -m experiments.learned_optimizer.report results/learned_optimizer/mnist',
    'mnist',
  )
  run = root / 'results' / 'learned_optimizer' / 'mnist'
  assert section == report.table(run)
  results = json.loads((run / 'results.json').read_text())
  assert results['run']['git_commit'] and results['run']['git_dirty'] is False
  assert results['config']['task'] == 'mnist' and results['config']['steps'] == 100


def test_readme_generalisation_table_matches_the_committed_runs():
  root = pathlib.Path(__file__).parents[2]
  runs = ['mnist'] + [
    f'mnist_{s}' for s in ('steps200', 'hidden40', 'two_layers', 'relu')
  ]
  dirs = [f'results/learned_optimizer/{run}' for run in runs]
  section = readme_block(
    f'python -m experiments.learned_optimizer.report {" ".join(dirs)}',
    'mnist generalisation',
  )
  assert section == report.generalisation_table([root / d for d in dirs])
  for d in dirs:
    results = json.loads((root / d / 'results.json').read_text())
    assert results['run']['git_dirty'] is False
    assert results['problems']['train'] == 'mlp20_sigmoid'
