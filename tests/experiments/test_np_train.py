"""The neural-process experiment: a tiny run end to end, exact resume, bad input,
the GP oracle against a dense numpy computation, and the README's generated block."""

import json
import pathlib

import jax
import numpy as np
import pytest
from run_checks import assert_log_names_commit, log_to

from experiments.common.checkpoint import CheckpointConfigMismatchError
from experiments.common.workdir import completed_result
from experiments.neural_processes import calibration, families, plot, report, train
from experiments.neural_processes.configs import anp, cnp, maml, smoke
from experiments.neural_processes.configs import np as latent

ROOT = pathlib.Path(__file__).parents[2]


def tiny(arg='np:sinusoid'):
  """The smoke config with one training and one evaluation context size: every
  shape is one compilation, and compiling dominates a run this small."""
  config = smoke.get_config(arg)
  config.context_sizes = (4,)
  config.eval.context_sizes = (3,)
  config.eval.plot_tasks = 1
  return config


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
  """The latent NP's tiny run (6 updates; checkpoints at 4 and 6) and its workdir."""
  workdir = tmp_path_factory.mktemp('np') / 'run'
  with log_to(workdir.parent / 'log.txt'):
    out = train.train_and_evaluate(tiny(), str(workdir))
  return out, workdir


def test_smoke_run_writes_its_files(smoke_run):
  out, workdir = smoke_run
  for name in train.OUTPUTS:
    assert (workdir / name).stat().st_size > 0, name
  assert list((workdir / 'tensorboard').glob('events.out.tfevents.*'))
  records = [json.loads(line) for line in (workdir / 'metrics.jsonl').open()]
  assert [r['step'] for r in records] == [2, 4, 6]
  assert {'train_loss', 'train_log_likelihood', 'train_kl'} <= records[0].keys()
  saved = json.loads((workdir / 'results.json').read_text())
  assert_log_names_commit(workdir.parent / 'log.txt', saved['run']['git_commit'])
  assert saved['iterations'] == 6 and saved['run']['command']
  metrics = saved['eval']['metrics']
  assert set(metrics) == {'log_likelihood', 'predict_log_likelihood', 'mse'}
  assert all(np.isfinite(m['mean']) for v in metrics.values() for m in v)
  curves = json.loads((workdir / 'predictions.json').read_text())
  task = curves['tasks'][0]
  assert len(task['mean']) == len(task['grid']) == 20 and len(task['samples']) == 2
  assert len(task['context_x']) == tiny().eval.plot_context
  with pytest.raises(FileExistsError, match='does not overwrite'):
    train.train_and_evaluate(tiny(), str(workdir))
  # experiments.runs counts it finished at its iterations, and not before.
  assert completed_result(workdir, 6) == workdir / 'results.json'
  assert completed_result(workdir, 7) is None


def test_a_stopped_run_resumes_to_the_same_params(smoke_run, tmp_path):
  out, _ = smoke_run
  config = tiny()
  config.num_iterations = 4  # stops at the checkpoint at update 4
  train.train_and_evaluate(config, str(tmp_path))
  for name in train.OUTPUTS:  # as if it had stopped before its evaluation
    (tmp_path / name).unlink()
  changed = tiny()
  changed.learning_rate = 1e-3
  with pytest.raises(CheckpointConfigMismatchError, match='learning_rate'):
    train.train_and_evaluate(changed, str(tmp_path))
  resumed = train.train_and_evaluate(tiny(), str(tmp_path))
  assert resumed['resumed_from_update'] == 4
  # The latent model draws z with fold_in(key, step) and the tasks with
  # fold_in(train_key, step): the two updates after the checkpoint repeat exactly.
  jax.tree.map(
    np.testing.assert_array_equal, resumed['state'].params, out['state'].params
  )
  records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').open()]
  assert [r['step'] for r in records] == [2, 4, 6]
  assert resumed['eval'] == out['eval']


def _set(config, field, value):
  *path, last = field.split('.')
  for p in path:
    config = config[p]
  config[last] = value


@pytest.mark.parametrize(
  'field, value, match',
  [
    ('model.name', 'gnp', "config.model.name = 'gnp' is not one of"),
    ('data.family', 'gp_matern', "config.data.family = 'gp_matern'"),
    ('context_sizes', (0, 3), 'an empty context'),
    ('context_sizes', (), 'non-empty tuple of positive ints'),
    ('eval.context_sizes', (3, 0), 'config.eval.context_sizes'),
    ('checkpoint_every', 3, 'multiple of config.log_every'),
    ('eval.num_tasks', 6, 'multiple of config.eval.tasks_per_call'),
    ('eval.plot_context', 9, 'config.eval.plot_context'),
    ('batch_size', 0, 'config.batch_size must be a positive int'),
  ],
)
def test_bad_config_values_are_named(tmp_path, field, value, match):
  config = tiny()
  _set(config, field, value)
  with pytest.raises(ValueError, match=match):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_maml_is_the_sinusoid_baseline_only(tmp_path):
  config = tiny('maml:sinusoid')
  config.data = smoke.get_config('np:gp_random').data
  with pytest.raises(ValueError, match='maml is the sinusoid baseline'):
    train.train_and_evaluate(config, str(tmp_path))


def test_evaluation_batch_refuses_a_context_beyond_its_pool():
  x = y = np.zeros((2, 8, 1), np.float32)
  batch = families.evaluation_batch(x, y, 3, 5)
  assert batch.support_inputs.shape == (2, 3, 1) and batch.query_inputs.shape[1] == 3
  with pytest.raises(ValueError, match='num_context'):
    families.evaluation_batch(x, y, 6, 5)
  with pytest.raises(ValueError, match='points'):
    families.evaluation_batch(x, y, 3, 8)


def test_context_sizes_are_a_function_of_the_step():
  config = anp.get_config('gp_random')
  drawn = [train.context_size(config, s) for s in range(400)]
  assert drawn == [train.context_size(config, s) for s in range(400)]
  assert set(drawn) == set(config.context_sizes)


def test_training_batch_targets_include_the_context_for_a_neural_process_only():
  x = np.arange(10, dtype=np.float32).reshape(1, 10, 1)
  np_batch = families.training_batch(x, x, 4, targets_include_context=True)
  maml_batch = families.training_batch(x, x, 4, targets_include_context=False)
  np.testing.assert_array_equal(np_batch.query_inputs, x)
  np.testing.assert_array_equal(maml_batch.query_inputs, x[:, 4:])
  np.testing.assert_array_equal(np_batch.support_inputs, x[:, :4])


def _dense_gp_log_likelihood(kernel, cx, cy, tx, ty, noise):
  """log p(y_T | context) per target under the GP, in float64 numpy, from the
  textbook formulas (Rasmussen & Williams, eq. 2.22-2.24), one output dimension."""
  length = float(kernel.length_scale[0, 0])
  signal = float(kernel.signal_std[0])

  def k(a, b):
    return signal**2 * np.exp(-0.5 * (a[:, None] - b[None]) ** 2 / length**2)

  cx, cy, tx, ty = (np.asarray(a, np.float64)[:, 0] for a in (cx, cy, tx, ty))
  kcc = k(cx, cx) + noise**2 * np.eye(len(cx))
  ktc = k(tx, cx)
  mean = ktc @ np.linalg.solve(kcc, cy)
  cov = k(tx, tx) + noise**2 * np.eye(len(tx)) - ktc @ np.linalg.solve(kcc, ktc.T)
  var = np.diag(cov)
  marginal = np.mean(-0.5 * ((ty - mean) ** 2 / var + np.log(2 * np.pi * var)))
  resid = ty - mean
  _, logdet = np.linalg.slogdet(cov)
  joint = -0.5 * (
    resid @ np.linalg.solve(cov, resid) + logdet + len(ty) * np.log(2 * np.pi)
  )
  return marginal, joint / len(ty)


def test_the_gp_oracle_equals_a_dense_numpy_computation():
  config = tiny('cnp:gp_random')
  family = families.make_family(config.data)
  x, y, kernels, _ = train.evaluation_tasks(config, family)
  pool = max(config.eval.context_sizes)
  batch = families.evaluation_batch(x, y, 3, pool)
  oracle = train.gp_oracle(config, batch, kernels)
  for i in (0, 5):
    kernel = jax.tree.map(lambda a, i=i: a[i], kernels)
    marginal, joint = _dense_gp_log_likelihood(
      kernel, *(a[i] for a in batch), config.data.noise_std
    )
    # float32 against float64: the posterior covariance loses ~1e-7 of the
    # kernel's scale to rounding, far below these tolerances.
    np.testing.assert_allclose(oracle['marginal'][i], marginal, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(oracle['joint'][i], joint, rtol=1e-4, atol=1e-4)


def test_the_configs_follow_the_notebooks():
  for module in (cnp, latent, anp):
    config = module.get_config('gp_random')
    assert config.batch_size == 16 and config.learning_rate == 1e-4
    assert config.model.encoder_sizes == (128,) * 4
    assert config.model.decoder_sizes == (128, 128)
  assert cnp.get_config().paper_iterations == 200_000
  assert anp.get_config().model.num_heads == 8
  fixed, random = anp.get_config('gp_fixed').data, anp.get_config('gp_random').data
  assert (fixed.length_scale, fixed.signal_std) == (0.4, 1.0)
  assert (random.length_scale, random.signal_std) == ((0.1, 0.6), (0.1, 1.0))
  baseline = maml.get_config()
  assert baseline.data.family == 'sinusoid' and baseline.model.hidden_sizes == (40, 40)
  assert (baseline.model.inner_steps, baseline.model.inner_learning_rate) == (1, 0.01)


def test_plot_and_report_read_finished_runs(smoke_run, tmp_path):
  _, workdir = smoke_run
  plot.plot_runs(tmp_path / 'both.png', [workdir, workdir])
  assert (tmp_path / 'both.png').stat().st_size > 0
  plot.plot_train_curves([workdir], tmp_path / 'curves.png')
  assert (tmp_path / 'curves.png').stat().st_size > 0
  table = report.tables(workdir.parent)
  assert 'NP, joint (4 z)' in table and 'NP predictive mean' in table
  assert "CPU budget: 6 of the paper's 100,000 iterations" in table


def test_calibration_reads_the_kept_checkpoints(smoke_run):
  _, workdir = smoke_run
  rows = calibration.calibration(workdir, 3)
  assert [r['step'] for r in rows] == [4, 6]
  for r in rows:
    assert r['mean_std'] > 0 and r['standardised_sq'] > 0
    # Chebyshev: the share of points with z^2 > 4 is at most mean(z^2) / 4.
    assert 0 <= r['outside_2sd'] <= r['standardised_sq'] / 4
  assert '| run | update |' in calibration.table(rows, 3)


def readme_block(folder: str, end: str) -> str:
  """The README's block generated by the report of ``folder``, up to ``end``."""
  readme = (ROOT / 'README.md').read_text()
  begin = (
    f'<!-- generated by `python -m experiments.neural_processes.report {folder}`; '
    'do not edit by hand -->\n'
  )
  return readme.split(begin, 1)[1].split(end, 1)[0]


def test_readme_block_equals_the_generated_tables():
  section = readme_block(
    'results/neural_processes', '<!-- end generated neural_processes -->'
  )
  assert section == report.tables(ROOT / 'results' / 'neural_processes')


def test_readme_full_length_block_and_ordering_match_the_runs():
  section = readme_block(
    'results/neural_processes/full', '<!-- end generated neural_processes full -->'
  )
  full = ROOT / 'results' / 'neural_processes' / 'full'
  assert section == report.tables(full)
  readme = (ROOT / 'README.md').read_text()
  runs = {(r['model'], r['family']): r for r in report.load_runs(full)}
  budget = {
    (r['model'], r['family']): r
    for r in report.load_runs(ROOT / 'results' / 'neural_processes')
  }
  families = ('gp_fixed', 'gp_random')
  gp_runs = {k for k in runs if k[1] in families}
  assert gp_runs == {(m, f) for m in ('anp', 'np', 'cnp') for f in families}

  def joint(model, family, runs=runs):
    return runs[model, family]['eval']['metrics']['log_likelihood']

  for family in ('gp_fixed', 'gp_random'):
    assert all(runs[m, family]['iterations'] == 100_000 for m in ('anp', 'np'))
    # The ANP above the NP at every context size, the intervals apart, and both
    # above their budget runs.
    for a, b in zip(joint('anp', family), joint('np', family)):
      assert a['mean'] - a['ci95'] > b['mean'] + b['ci95'], family
    for model in ('anp', 'np'):
      full_ll, budget_ll = joint(model, family), joint(model, family, budget)
      assert all(f['mean'] > c['mean'] for f, c in zip(full_ll, budget_ll))
  text = ' '.join(readme.split())

  def pair(family, i):
    a, b = joint('anp', family)[i], joint('np', family)[i]
    return (
      f'{a["mean"]:.2f} ± {a["ci95"]:.2f} against {b["mean"]:.2f} ± {b["ci95"]:.2f}'
    )

  assert f'at 5 context points too ({pair("gp_fixed", 0)} nats per target, joint)' in (
    text
  )
  assert f'(50 points: {pair("gp_fixed", -1)})' in text
  anp5 = joint('anp', 'gp_fixed', budget)[0]['mean']
  np5 = joint('np', 'gp_fixed', budget)[0]['mean']
  assert f'(5 points: the ANP from {anp5:.2f}, the NP from {np5:.2f})' in text
  assert (
    f'from 5 points ({pair("gp_random", 0)}, joint) to 50 ({pair("gp_random", -1)})'
  ) in text
  anp5 = joint('anp', 'gp_random', budget)[0]['mean']
  np5 = joint('np', 'gp_random', budget)[0]['mean']
  assert f'tied at 5 points ({anp5:.2f} against {np5:.2f})' in text

  # The CNP at 200,000: under the ANP everywhere, tied with the NP at 5 points and
  # above it at 50, above its budget run.
  def apart(a, b):
    return a['mean'] - a['ci95'] > b['mean'] + b['ci95']

  def versus(family, i):
    a, b = joint('cnp', family)[i], joint('np', family)[i]
    return (
      f'{a["mean"]:.2f} ± {a["ci95"]:.2f} against {b["mean"]:.2f} ± {b["ci95"]:.2f}'
    )

  for family in families:
    assert runs['cnp', family]['iterations'] == 200_000
    assert all(map(apart, joint('anp', family), joint('cnp', family))), family
    five = joint('cnp', family)[0], joint('np', family)[0]
    assert not apart(*five) and not apart(*five[::-1]), family
    assert apart(joint('cnp', family)[-1], joint('np', family)[-1]), family
    full_ll, budget_ll = joint('cnp', family), joint('cnp', family, budget)
    assert all(f['mean'] > c['mean'] for f, c in zip(full_ll, budget_ll))
  assert (
    f'5 context points (random kernel: {versus("gp_random", 0)}; fixed: '
    f'{versus("gp_fixed", 0)})'
  ) in text
  assert (
    f'at 50 (random: {versus("gp_random", -1)}; fixed: {versus("gp_fixed", -1)})'
  ) in text

  # The sinusoid at full length: MSEs and the NP above the ANP up to 20 points.
  def mse(model, i):
    m = runs[model, 'sinusoid']['eval']['metrics']['mse'][i]
    return m, f'{m["mean"]:.3f} ± {m["ci95"]:.3f}'

  sine = {m for m, f in runs if f == 'sinusoid'}
  assert sine == {'cnp', 'np', 'anp', 'maml'}
  assert runs['maml', 'sinusoid']['iterations'] == 70_000
  assert (
    f'with the CNP ({mse("np", 0)[1]} and {mse("cnp", 0)[1]}), against the '
    f"ANP's {mse('anp', 0)[1]} and MAML's {mse('maml', 0)[1]}"
  ) in text
  assert apart(mse('anp', 0)[0], mse('np', 0)[0]) and apart(
    mse('anp', 0)[0], mse('cnp', 0)[0]
  )
  for i in range(4):
    assert all(apart(mse('maml', i)[0], mse(m, i)[0]) for m in ('cnp', 'np', 'anp'))
  assert (
    f"(50 points: {mse('maml', -1)[1]} against the NP's {mse('np', -1)[1]})" in text
  )
  np_ll, anp_ll = joint('np', 'sinusoid'), joint('anp', 'sinusoid')
  assert all(apart(a, b) for a, b in zip(np_ll[:3], anp_ll[:3]))
  assert not apart(np_ll[-1], anp_ll[-1]) and not apart(anp_ll[-1], np_ll[-1])
  assert (
    f'(5: {np_ll[0]["mean"]:.2f} ± {np_ll[0]["ci95"]:.2f} against '
    f'{anp_ll[0]["mean"]:.2f} ± {anp_ll[0]["ci95"]:.2f})'
  ) in text
  cnp_random = joint('cnp', 'gp_random', budget)[0]['mean']
  cnp_fixed = joint('cnp', 'gp_fixed', budget)[0]['mean']
  assert (f"budget run's {cnp_random:.2f} (random) and {cnp_fixed:.2f} (fixed)") in text


def test_budget_labels_a_run_at_the_papers_length_as_such():
  short = {'iterations': 2_500, 'paper_iterations': 100_000}
  full = {'iterations': 100_000, 'paper_iterations': 100_000}
  assert report.budget(short) == "CPU budget: 2,500 of the paper's 100,000 iterations"
  assert report.budget(full) == "the paper's 100,000 iterations"
