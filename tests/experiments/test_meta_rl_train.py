"""The MAML-RL 2D-navigation experiment: a real smoke run, its report, resuming."""

import importlib
import json
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from run_checks import assert_log_names_commit, log_to, readme_block

from experiments.common import checkpoint
from experiments.meta_rl import report, train
from experiments.meta_rl.configs import default, smoke
from jmeta import rl


def test_default_config_has_the_papers_sizes():
  config = default.get_config()
  assert (config.num_tasks, config.num_episodes, config.env.horizon) == (20, 20, 100)
  assert config.inner_learning_rate == 0.1 and config.inner_steps == 1
  assert tuple(config.policy.hidden_sizes) == (100, 100)


def test_bad_config_values_are_named(tmp_path):
  config = smoke.get_config()
  config.eval.num_tasks = 1
  with pytest.raises(ValueError, match='config.eval.num_tasks must be at least 2'):
    train.train_and_evaluate(config, str(tmp_path))
  config = smoke.get_config()
  config.num_tasks = 0
  with pytest.raises(ValueError, match='config.num_tasks'):
    train.train_and_evaluate(config, str(tmp_path))
  config = smoke.get_config()
  config.env.n_frame = 3
  with pytest.raises(
    ValueError, match=r'config.env.n_frame is not an option of navigation_2d'
  ):
    train.train_and_evaluate(config, str(tmp_path))


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
  """The smoke config's run (4 iterations) and its workdir."""
  workdir = tmp_path_factory.mktemp('meta_rl') / 'run'
  with log_to(workdir.parent / 'log.txt'):
    out = train.train_and_evaluate(smoke.get_config(), str(workdir))
  return out, workdir


def test_smoke_run_writes_its_files(smoke_run):
  out, workdir = smoke_run
  for name in train.OUTPUTS:
    assert (workdir / name).stat().st_size > 0, name
  records = [json.loads(line) for line in (workdir / 'metrics.jsonl').open()]
  assert [r['step'] for r in records] == [2, 4]
  assert {'loss', 'return_before', 'return_after', 'episodes'} <= records[0].keys()
  saved = json.loads((workdir / 'results.json').read_text())
  assert_log_names_commit(workdir.parent / 'log.txt', saved['run']['git_commit'])
  assert saved['iterations'] == 4 and saved['episodes_trained'] == 4 * 2 * 3 * 2
  assert saved['run']['command'] and 'git_commit' in saved['run']
  ev = saved['eval']
  assert ev['steps'] == [0, 1, 2]
  for key in ('maml', 'random_init'):
    assert len(ev[key]['mean']) == 3 and all(m <= 0 for m in ev[key]['mean'])
    # The per-task returns are those the summary averages, task by task.
    per_task = np.asarray(ev['per_task'][key])
    assert per_task.shape == (ev['num_tasks'], 3)
    np.testing.assert_allclose(per_task.mean(0), ev[key]['mean'], rtol=1e-5)
  assert np.shape(ev['goals']) == (ev['num_tasks'], 2)
  table = (workdir / 'results.md').read_text()
  assert 'MAML-RL (dice, adam)' in table and 'goal-seeking controller' in table
  # The shared rows (initial policy, controller) appear once for several runs.
  two = report.results_table([saved, saved])
  assert two.count('random init') == 1 and two.count('MAML-RL (dice, adam)') == 2
  assert two.count('goal-seeking') == 1
  with pytest.raises(FileExistsError, match='does not overwrite'):
    train.train_and_evaluate(smoke.get_config(), str(workdir))


def test_a_stopped_run_resumes_to_the_same_params(smoke_run, tmp_path):
  out, _ = smoke_run
  config = smoke.get_config()
  config.num_iterations = 2  # stops at the checkpoint at iteration 2
  train.train_and_evaluate(config, str(tmp_path))
  for name in train.OUTPUTS:  # as if it had stopped before its evaluation
    (tmp_path / name).unlink()
  config.num_iterations = 4
  resumed = train.train_and_evaluate(config, str(tmp_path))
  assert resumed['resumed_from_iteration'] == 2
  jax.tree.map(
    np.testing.assert_array_equal, resumed['state'].params, out['state'].params
  )
  records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').open()]
  assert [r['step'] for r in records] == [2, 4]
  # Called again on the finished run, it only evaluates: the same results, and the
  # rate of the two stretches it trained in.
  for name in train.OUTPUTS:
    (tmp_path / name).unlink()
  again = train.train_and_evaluate(config, str(tmp_path))
  assert again['eval'] == resumed['eval']
  timings = [json.loads(line) for line in (tmp_path / 'timing.jsonl').open()]
  assert [(t['from_step'], t['to_step']) for t in timings] == [(0, 2), (2, 4)]
  rate = sum(t['seconds'] for t in timings) / 4
  assert again['seconds_per_iteration'] == pytest.approx(rate)


def test_readme_table_is_the_committed_runs_report():
  root = pathlib.Path(__file__).parents[2]
  runs = report.load_runs(root / 'results' / 'meta_rl')
  block = readme_block(
    'python -m experiments.meta_rl.report results/meta_rl', 'meta_rl'
  )
  assert block == report.results_table(runs)


def test_a_trpo_smoke_run_trains_and_evaluates(tmp_path):
  from experiments.meta_rl.configs import trpo

  config = smoke.get_config()
  del config.learning_rate
  config.outer = 'trpo'
  config.trpo = trpo.get_config().trpo
  config.num_iterations = 2
  out = train.train_and_evaluate(config, str(tmp_path))
  assert out['iterations'] == 2 and int(out['state'].step) == 2
  records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').open()]
  assert {'kl', 'step_fraction', 'improvement'} <= records[-1].keys()
  assert all(r['kl'] <= 0.01 * (1 + 1e-6) for r in records)


def test_readme_cosine_table_is_the_committed_measurements():
  root = pathlib.Path(__file__).parents[2]
  block = readme_block(
    'python -m experiments.meta_rl.report --cosines results/meta_rl/cosines',
    'meta_rl_cosines',
  )
  points = report.load_cosines(root / 'results' / 'meta_rl' / 'cosines')
  assert block == report.cosines_table(points)
  assert [p['step'] for p in points] == [0, 500]
  assert all(p['batches'] == 100 and not p['run']['git_dirty'] for p in points)


def test_readme_prose_on_the_naive_runs_divergence_matches_its_log():
  root = pathlib.Path(__file__).parents[2]
  text = ' '.join((root / 'README.md').read_text().split())
  log = (root / 'results' / 'meta_rl' / 'maml_naive' / 'log.txt').read_text()
  step = int(re.search(r'became non-finite at step (\d+)', log).group(1))
  before = float(re.search(r'iteration 330: return before (-?[\d.]+)', log).group(1))
  assert (step, round(before)) == (331, -184)
  assert (
    'non-finite at iteration 331 (its `log.txt`; the return before adaptation fell '
    'to -184 at iteration 330)' in text
  )
  naive = json.loads(
    (root / 'results' / 'meta_rl' / 'maml_naive' / 'results.json').read_text()
  )
  assert naive['iterations'] == 300


def test_locomotion_config_has_the_papers_sizes_and_its_codes_training():
  from experiments.meta_rl.configs import locomotion

  config = locomotion.get_config('half_cheetah_velocity')
  assert config.env.to_dict() == {
    'name': 'half_cheetah_velocity',
    'horizon': 200,
    'n_frames': 3,
    'observation': 'brax',
    'velocity': 'torso',
    'reset': 'brax',
  }
  assert (config.num_tasks, config.num_episodes) == (40, 10)
  assert tuple(config.policy.hidden_sizes) == (100, 100) and config.outer == 'trpo'
  assert config.inner_learning_rate == 0.1 and config.inner_steps == 1
  assert config.estimator == 'naive' and config.num_iterations == 476
  assert config.trpo.to_dict() == {
    'max_kl': 0.01,
    'damping': 1e-5,
    'cg_iterations': 10,
    'backtrack_ratio': 0.8,
    'line_search_steps': 15,
  }
  direction = locomotion.get_config('half_cheetah_direction')
  assert (direction.num_episodes, direction.trpo.max_kl) == (20, 0.02)
  assert locomotion.get_config('ant_direction').env.n_frames == 4
  with pytest.raises(ValueError, match="unknown locomotion family 'hopper'"):
    locomotion.get_config('hopper')


def test_locomotion_cpu_budgets_differ_only_in_the_outer_step():
  from experiments.meta_rl.configs import locomotion_cpu, locomotion_cpu_trpo, trpo

  adam = locomotion_cpu.get_config('ant_direction').to_dict()
  trpo_budget = locomotion_cpu_trpo.get_config('ant_direction').to_dict()
  assert (adam.pop('outer'), adam.pop('learning_rate')) == ('adam', 3e-3)
  assert trpo_budget.pop('outer') == 'trpo'
  assert trpo_budget.pop('trpo') == trpo.get_config().trpo.to_dict()
  assert adam == trpo_budget
  assert trpo_budget['env'] == {
    'name': 'ant_direction',
    'horizon': 100,
    'velocity': 'torso',
  }


@pytest.mark.parametrize(
  'run, module',
  [
    ('half_cheetah_direction', 'locomotion_cpu'),
    ('half_cheetah_direction_trpo', 'locomotion_cpu_trpo'),
    ('half_cheetah_velocity_trpo', 'locomotion_cpu_trpo'),
  ],
)
def test_the_first_budgets_still_give_the_configs_their_runs_recorded(run, module):
  """locomotion.py took the reference code's training after these runs; their
  configs keep the settings they ran with (and fields added since at the values
  they ran with)."""
  root = pathlib.Path(__file__).parents[2] / 'results' / 'meta_rl' / 'locomotion'
  recorded = json.loads((root / run / 'config.json').read_text())
  config = importlib.import_module(f'experiments.meta_rl.configs.{module}')
  got = config.get_config(recorded['env']['name']).to_dict()
  assert json.loads(json.dumps(got)) == checkpoint.with_added_fields(
    recorded, train.ADDED_FIELDS
  )


def test_locomotion_cpu_reference_budget_keeps_the_references_training():
  from experiments.meta_rl.configs import locomotion, locomotion_cpu_reference

  full = locomotion.get_config('half_cheetah_direction').to_dict()
  cpu = locomotion_cpu_reference.get_config('half_cheetah_direction').to_dict()
  for field in ('env', 'estimator', 'trpo', 'policy', 'num_iterations', 'inner_steps'):
    assert cpu[field] == full[field], field
  assert (cpu['num_tasks'], cpu['num_episodes']) == (20, 10)


def test_single_direction_config_is_trpo_on_one_direction_with_the_references_sizes():
  from experiments.meta_rl.configs import locomotion, locomotion_single_direction

  full = locomotion.get_config('ant_direction').to_dict()
  single = locomotion_single_direction.get_config('ant_direction').to_dict()
  assert single['env'] == {**full['env'], 'direction': 1.0, 'backend': 'spring'}
  assert (single['inner_steps'], single['num_tasks'], single['num_episodes']) == (
    0,
    1,
    100,
  )
  assert single['trpo'] == {**full['trpo'], 'max_kl': 0.01}
  env = train.make_env(locomotion_single_direction.get_config())
  goals = rl.sample_tasks(env, jax.random.key(0), 8).goal
  np.testing.assert_array_equal(goals, 1.0)
  with pytest.raises(ValueError, match="unknown direction family 'half_cheetah_vel"):
    locomotion_single_direction.get_config('half_cheetah_velocity')


def _line_walk(horizon: int) -> rl.Environment:
  """A family with other sizes than 2D navigation's and no oracle: walk along a
  line to a goal in [-1, 1], observing (position, 1, 0), one action."""

  def reset(task, key):
    del task, key
    position = jnp.zeros(())
    return position, jnp.stack([position, 1.0, 0.0])

  def step(task, position, action):
    position = position + jnp.clip(action[0], -0.1, 0.1)
    obs = jnp.stack([position, 1.0, 0.0])
    return position, obs, -jnp.abs(position - task), jnp.array(False)

  return rl.Environment(
    'line_walk',
    lambda key: jax.random.uniform(key, (), minval=-1.0, maxval=1.0),
    reset,
    step,
    (3,),
    (1,),
    None,
    horizon,
  )


def test_any_family_trains_through_the_same_code_without_an_oracle(
  tmp_path, monkeypatch
):
  """The locomotion configs' path (a family by name, the policy sized from it, no
  task-seeing baseline), on a family cheap enough to compile here."""
  from experiments.meta_rl.configs import locomotion_cpu

  monkeypatch.setitem(train.ENVIRONMENTS, 'line_walk', _line_walk)
  config = locomotion_cpu.get_config('half_cheetah_direction')
  config.env.name, config.env.horizon = 'line_walk', 5
  del config.env.observation, config.env.velocity, config.env.reset  # brax's
  config.policy.hidden_sizes = (8,)
  config.num_tasks = config.num_episodes = 2
  config.num_iterations = config.log_every = config.checkpoint_every = 2
  config.eval.num_tasks = config.eval.num_episodes = 2
  config.eval.steps = 1
  out = train.train_and_evaluate(config, str(tmp_path))
  assert out['iterations'] == 2
  assert set(out['eval']) == {
    'steps',
    'num_tasks',
    'seed',
    'maml',
    'random_init',
    'goals',
    'per_task',
  }
  assert np.shape(out['eval']['goals']) == (2,)  # the task is its goal here
  assert np.all(np.isfinite(out['eval']['maml']['mean']))
  params = out['state'].params
  assert params['mean']['layer_0']['w'].shape == (3, 8)  # 3 observations
  assert params['log_std'].shape == (1,)  # 1 action
  table = (tmp_path / 'results.md').read_text()
  assert 'goal-seeking' not in table and 'MAML-RL' in table
  config.env.name = 'cartpole'
  with pytest.raises(ValueError, match="config.env.name must be one of .*'cartpole'"):
    train.train_and_evaluate(config, str(tmp_path / 'bad'))


def _benchmark_rows_and_readme(name: str) -> tuple[list[dict], str]:
  root = pathlib.Path(__file__).parents[2]
  bench = root / 'benchmarks' / 'results' / f'{name}.json'
  return json.loads(bench.read_text())['rows'], ' '.join(
    (root / 'README.md').read_text().split()
  )


def test_readme_brax_throughput_is_the_committed_benchmark():
  rows, text = _benchmark_rows_and_readme('cpu_rl_envs_brax')
  for backend in ('spring', 'generalized', 'positional'):
    rates = [r['steps_per_s'] for r in rows if r['env'].endswith('@' + backend)]
    assert len(rates) == 2
    assert f'{min(rates):,.0f}-{max(rates):,.0f}' in text
  spring = min(r['steps_per_s'] for r in rows if r['env'].endswith('@spring'))
  assert spring > max(r['steps_per_s'] for r in rows if '@spring' not in r['env'])


def test_readme_throughput_of_every_brax_family_is_the_committed_benchmark():
  rows, text = _benchmark_rows_and_readme('cpu_rl_envs_brax_families')
  for family in ('half_cheetah_direction', 'half_cheetah_velocity', 'ant_direction'):
    rates = [r['steps_per_s'] for r in rows if r['env'] == f'{family}@spring']
    assert sorted(r['num_envs'] for r in rows if r['env'] == f'{family}@spring') == [
      64,
      512,
    ]
    assert f'{min(rates):,.0f}-{max(rates):,.0f}' in text


def _locomotion_run_and_readme(name: str) -> tuple[pathlib.Path, dict, str]:
  """A committed locomotion run's folder and results, and the README's text with
  its white space folded."""
  root = pathlib.Path(__file__).parents[2]
  run = root / 'results' / 'meta_rl' / 'locomotion' / name
  results = json.loads((run / 'results.json').read_text())
  return run, results, ' '.join((root / 'README.md').read_text().split())


def _cell(summary: dict, i: int) -> str:
  """A held-out summary after ``i`` steps as the README writes it: mean ± CI."""
  return f'{summary["mean"][i]:.1f} ± {summary["ci95"][i]:.1f}'


def test_readme_statement_on_the_half_cheetah_budget_run_matches_its_results():
  _, results, text = _locomotion_run_and_readme('half_cheetah_direction')
  assert results['config']['env']['name'] == 'half_cheetah_direction'
  assert (results['config']['outer'], results['iterations']) == ('adam', 150)
  maml, random_init = results['eval']['maml'], results['eval']['random_init']
  for ev, (first, last) in ((maml, (0, 2)), (random_init, (0, 2))):
    assert _cell(ev, first) in text
    assert _cell(ev, last) in text
  # "no better than a random initialisation": MAML's mean after adaptation is not
  # above the random init's.
  assert maml['mean'][-1] <= random_init['mean'][-1]


def test_readme_statement_on_the_half_cheetah_trpo_runs_matches_their_results():
  run, results, text = _locomotion_run_and_readme('half_cheetah_direction_trpo')
  runs = run.parent
  assert (results['config']['outer'], results['iterations']) == ('trpo', 150)
  assert results['config']['trpo']['max_kl'] == 0.01
  maml, random_init = results['eval']['maml'], results['eval']['random_init']
  for ev in (maml, random_init):
    assert _cell(ev, 0) in text and _cell(ev, 2) in text
  assert f'{round(results["train_seconds_total"] / 60)} min beside' in text
  # "did no better": within the random init's interval before and after adaptation.
  for i in (0, 2):
    assert abs(maml['mean'][i] - random_init['mean'][i]) < random_init['ci95'][i]
  for run in ('half_cheetah_direction_trpo', 'half_cheetah_direction_trpo_dice_metric'):
    kls = [json.loads(line)['kl'] for line in (runs / run / 'metrics.jsonl').open()]
    assert f'{min(kls):.4f}-{max(kls):.4f}' in text
    assert max(kls) < 0.01


def _by_direction(ev: dict, policy: str, direction: float) -> tuple[np.ndarray, int]:
  """Mean returns after 0.. steps over the held-out tasks of one direction, and
  their number."""
  goals = np.asarray(ev['goals'])
  return np.asarray(ev['per_task'][policy])[goals == direction].mean(0), int(
    (goals == direction).sum()
  )


def test_readme_statement_on_the_reference_budget_run_matches_its_results():
  _, results, text = _locomotion_run_and_readme('half_cheetah_direction_reference_cpu')
  config, ev = results['config'], results['eval']
  assert (config['estimator'], config['trpo']['max_kl']) == ('naive', 0.02)
  assert config['env']['n_frames'] == 3 and results['iterations'] == 101
  assert (config['num_tasks'], config['num_episodes']) == (20, 10)
  assert f'{round(results["train_seconds_total"] / 60)} min alone' in text
  for ev_ in (ev['maml'], ev['random_init']):
    for i in (0, 1):
      assert _cell(ev_, i) in text
  forward, n_forward = _by_direction(ev, 'maml', 1.0)
  backward, n_backward = _by_direction(ev, 'maml', -1.0)
  random_backward, _ = _by_direction(ev, 'random_init', -1.0)
  assert (
    f'from {forward[0]:.1f} to {forward[1]:.1f} after one step, on the {n_forward} '
    'forward goals' in text
  )
  assert (
    f'from {backward[0]:.1f} to {backward[1]:.1f} on the {n_backward} backward goals, '
    f'where the random initialisation gets {random_backward[1]:.1f}' in text
  )
  # "runs forward but not backward": a positive return forward after one step, and
  # backward below the random initialisation adapted the same way.
  assert forward[1] > 0 and backward[1] < random_backward[1]


def test_readme_statement_on_the_paper_size_direction_run_matches_its_results():
  from experiments.meta_rl.configs import locomotion

  _, results, text = _locomotion_run_and_readme('half_cheetah_direction_reference')
  ev = results['eval']
  # The config unchanged, at every field it trained with (and added since).
  config = locomotion.get_config('half_cheetah_direction').to_dict()
  recorded = checkpoint.with_added_fields(results['config'], train.ADDED_FIELDS)
  assert recorded == json.loads(json.dumps(config))
  assert results['iterations'] == 101 and ev['num_tasks'] == 40
  assert (
    f'`half_cheetah_direction_reference`, {round(results["train_seconds_total"] / 60)} min'
    in text
  )
  for name, label in (
    ('maml', 'MAML-RL (naive, TRPO), jmeta'),
    ('random_init', 'random init, same adaptation, jmeta'),
  ):
    cells = [_cell(ev[name], i) for i in range(len(ev[name]['mean']))]
    assert f'| {label} | ' + ' | '.join(cells) + ' |' in text
  per_task = np.asarray(ev['per_task']['maml'])
  above = int(np.sum(per_task[:, 1] > np.asarray(ev['per_task']['random_init'])[:, 1]))
  assert f'above the random initialisation on {above} of the 40 tasks' in text
  forward, n_forward = _by_direction(ev, 'maml', 1.0)
  backward, n_backward = _by_direction(ev, 'maml', -1.0)
  assert (
    f'on the {n_forward} forward goals it goes from {forward[0]:.1f} to '
    f'{forward[1]:.1f}, on the {n_backward} backward goals from {backward[0]:.1f} '
    f'to {backward[1]:.1f}' in text
  )
  # "it learns both directions": each direction's adapted return is above the
  # random initialisation's, adapted the same way.
  for direction, mean in ((1.0, forward), (-1.0, backward)):
    random_init, _ = _by_direction(ev, 'random_init', direction)
    assert mean[1] > random_init[1] and mean[1] > mean[0]


def test_readme_statement_on_the_cut_velocity_reference_run_matches_its_results():
  name = 'half_cheetah_velocity_reference_cpu'
  _, results, text = _locomotion_run_and_readme(name)
  config, ev = results['config'], results['eval']
  assert (config['estimator'], config['trpo']['max_kl']) == ('naive', 0.01)
  assert config['num_iterations'] == results['iterations'] == 101
  assert 'cut to 101 of its 476 updates' in text
  assert f'(`{name}`, {round(results["train_seconds_total"] / 60)} min' in text
  maml, random_init = ev['maml'], ev['random_init']
  assert (
    f'{_cell(maml, 0)} before adaptation and {_cell(maml, 1)} after one step' in text
  )
  assert f'({_cell(random_init, 0)} and {_cell(random_init, 1)} after one step)' in text
  # "does not adapt yet": one step changes the return by less than its interval;
  # "well above the random initialisation": beyond both intervals.
  assert abs(maml['mean'][1] - maml['mean'][0]) < maml['ci95'][0]
  assert (
    maml['mean'][0] - random_init['mean'][0] > maml['ci95'][0] + random_init['ci95'][0]
  )


def test_readme_statement_on_the_half_cheetah_velocity_run_matches_its_results():
  run, results, text = _locomotion_run_and_readme('half_cheetah_velocity_trpo')
  assert results['config']['env']['name'] == 'half_cheetah_velocity'
  assert (results['config']['outer'], results['iterations']) == ('trpo', 150)
  maml, random_init = results['eval']['maml'], results['eval']['random_init']
  cells = [(ev['mean'][i], ev['ci95'][i]) for ev in (maml, random_init) for i in (0, 2)]
  for mean, ci in cells:
    assert f'{mean:.1f} ± {ci:.1f}' in text
  minutes = round(results['train_seconds_total'] / 60)
  assert f'(`{run.name}`, {minutes} min beside' in text
  # "every interval overlapping the others".
  for a_mean, a_ci in cells:
    for b_mean, b_ci in cells:
      assert abs(a_mean - b_mean) < a_ci + b_ci


def test_readme_statement_on_the_forward_trpo_runs_matches_their_results():
  run, results, text = _locomotion_run_and_readme('half_cheetah_forward_trpo')
  at_101 = json.loads((run / 'results_at_101.json').read_text())
  generalized = json.loads(
    (run.parent / 'half_cheetah_forward_trpo_generalized' / 'results.json').read_text()
  )
  for r, iterations, backend in (
    (at_101, 101, 'spring'),
    (results, 501, 'spring'),
    (generalized, 101, 'generalized'),
  ):
    config = r['config']
    assert (r['iterations'], config['inner_steps']) == (iterations, 0)
    assert (config['env']['direction'], config['num_episodes']) == (1.0, 100)
    assert config['env'].get('backend', 'spring') == backend
    assert _cell(r['eval']['maml'], 0) in text
  assert generalized['config']['env']['n_frames'] == 1
  # "still below the 293.2" of the reference's MAML after one step.
  assert results['eval']['maml']['mean'][0] < 293.2


def test_readme_statement_on_the_runs_at_mamls_sample_matches_their_results():
  run, results, text = _locomotion_run_and_readme('half_cheetah_forward_trpo_800')
  at_101 = json.loads((run / 'results_at_101.json').read_text())
  stretches = [
    json.loads(line) for line in (run / 'timing.jsonl').read_text().splitlines()
  ]
  for r, iterations in ((at_101, 101), (results, 501)):
    config = r['config']
    assert (r['iterations'], config['inner_steps']) == (iterations, 0)
    assert (config['env']['direction'], config['num_tasks']) == (1.0, 1)
    assert (config['num_episodes'], config['trpo']['max_kl']) == (800, 0.02)
    assert _cell(r['eval']['maml'], 0) in text
  minutes = [round(t['seconds'] / 60) for t in stretches]
  assert f'(`{run.name}`, {minutes[0]} min beside only a niced run, then ' in text
  assert f'{minutes[1]} min beside another)' in text
  # "above the reference's oracle (442.7)": the whole interval.
  assert results['eval']['maml']['mean'][0] - results['eval']['maml']['ci95'][0] > 442.7
  # MAML-RL's one-step return on forward goals over this policy's, both at 101
  # updates of 800 episodes and max KL 0.02.
  reference = json.loads(
    (run.parent / 'half_cheetah_direction_reference' / 'results.json').read_text()
  )
  mc = reference['config']
  assert (mc['num_tasks'] * mc['num_episodes'], mc['trpo']['max_kl']) == (800, 0.02)
  assert reference['iterations'] == 101
  forward, _ = _by_direction(reference['eval'], 'maml', 1.0)
  ratio = forward[1] / at_101['eval']['maml']['mean'][0]
  assert f'forward goals is {ratio:.2f} of that directly trained' in text
  # MAML-RL with every task forward, at the reference run's sizes.
  maml = json.loads(
    (run.parent / 'half_cheetah_forward_maml' / 'results.json').read_text()
  )
  config = maml['config']
  assert config['env']['direction'] == 1.0
  for key in ('num_tasks', 'num_episodes', 'inner_steps', 'inner_learning_rate'):
    assert config[key] == mc[key], key
  assert (config['trpo'], maml['iterations']) == (mc['trpo'], 101)
  ev = maml['eval']['maml']
  assert (
    f'returns {_cell(ev, 0)} before adaptation and {_cell(ev, 1)} after one' in text
  )
  # "learns more slowly than TRPO": below it at equal updates.
  assert ev['mean'][0] < at_101['eval']['maml']['mean'][0]
  # "the reference's one step worth 344": 293.2 after it, -50.7 before.
  assert f"reference's one step worth {293.2 - -50.7:.0f}" in text


def _sweep_row(sweep: dict, rate: float) -> dict:
  (row,) = [r for r in sweep['by_rate'] if r['rate'] == rate]
  return row


def _pm(summary: dict, digits: int = 1) -> str:
  return f'{summary["mean"]:.{digits}f} ± {summary["ci95"]:.{digits}f}'


def test_readme_statement_on_the_inner_step_sizes_matches_their_files():
  run, _, text = _locomotion_run_and_readme('half_cheetah_forward_maml')
  runs = run.parent
  maml = json.loads(
    (runs / 'half_cheetah_forward_maml/inner_step_sizes.json').read_text()
  )
  trpo = json.loads(
    (runs / 'half_cheetah_forward_trpo_800/inner_step_sizes.json').read_text()
  )
  init = json.loads((runs / 'inner_step_sizes_at_init/spring.json').read_text())
  for sweep in (maml, trpo, init):
    assert (sweep['tasks'], sweep['episodes'], sweep['trained_rate']) == (40, 20, 0.1)
    assert sweep['run']['git_dirty'] is False
  assert maml['step'] == 101 and trpo['step'] == 501 and init['step'] == 0
  assert init['config']['env']['backend'] == 'spring'
  step, lost, at_init = (_sweep_row(s, 0.1) for s in (maml, trpo, init))
  max_kl = json.loads((run / 'config.json').read_text())['trpo']['max_kl']
  assert (
    f'step at 0.1 changes its return by {_pm(step["change"])} against no step, '
    f'and moves it by a KL of {step["kl"]["mean"]:.2f} per time step, where each '
    f'outer update is bounded at {max_kl}' in text
  )
  loss = {'mean': -lost['change']['mean'], 'ci95': lost['change']['ci95']}
  assert (
    f'loses {_pm(loss)} of its return to the same step, at a KL of '
    f"{lost['kl']['mean']:.2f}; the initial policy's step has a KL of "
    f'{at_init["kl"]["mean"]:.2f}' in text
  )
  # "costs little": within its interval of no change, where the directly trained
  # policy's loss is far outside its own.
  assert abs(step['change']['mean']) < step['change']['ci95']
  assert loss['mean'] - loss['ci95'] > 10 * step['change']['ci95']


def _paired_change(ev: dict, policy: str) -> tuple[float, float]:
  """One step's change of the return per task: mean and 95% CI over the tasks."""
  returns = np.asarray(ev['per_task'][policy])
  change = returns[:, 1] - returns[:, 0]
  return change.mean(), 1.96 * change.std(ddof=1) / np.sqrt(len(change))


def _paired_gain(ev: dict, policy: str) -> str:
  """``_paired_change`` as the README writes it: mean ± CI."""
  return '{:.1f} ± {:.1f}'.format(*_paired_change(ev, policy))


def test_readme_statement_on_the_full_velocity_reference_run_matches_its_results():
  name = 'half_cheetah_velocity_reference_cpu_full'
  _, results, text = _locomotion_run_and_readme(name)
  config, ev = results['config'], results['eval']
  assert (config['estimator'], config['trpo']['max_kl']) == ('naive', 0.01)
  assert config['num_iterations'] == results['iterations'] == 476
  assert (config['num_tasks'], config['num_episodes']) == (20, 10)
  assert f'(`{name}`, {round(results["train_seconds_total"] / 60)} min' in text
  maml = ev['maml']
  assert (
    f'{_cell(maml, 0)} before adaptation and {_cell(maml, 1)} after one step' in text
  )
  assert f'a paired change of {_paired_gain(ev, "maml")} over the 20 tasks' in text
  assert f'random initialisation gains {_paired_gain(ev, "random_init")}' in text
  # "still does not" adapt: the paired change's interval holds zero.
  mean, ci = _paired_change(ev, 'maml')
  assert abs(mean) < ci


@pytest.mark.parametrize('rate', [0.05, 0.2])
def test_readme_statement_on_another_inner_rate_matches_the_runs(rate):
  run, other, text = _locomotion_run_and_readme(f'half_cheetah_direction_inner{rate}')
  reference = json.loads(
    (run.parent / 'half_cheetah_direction_reference' / 'results.json').read_text()
  )
  config, mc = other['config'], reference['config']
  assert (config['inner_learning_rate'], mc['inner_learning_rate']) == (rate, 0.1)
  for key in ('env', 'num_tasks', 'num_episodes', 'inner_steps', 'trpo', 'estimator'):
    assert config[key] == mc[key], key
  assert other['iterations'] == reference['iterations'] == 101
  assert other['git_dirty'] is False
  minutes = round(other['train_seconds_total'] / 60)
  assert f"(`{run.name}`, otherwise that run's training, {minutes} min on the" in text
  after = (_cell(other['eval']['maml'], 1), _cell(reference['eval']['maml'], 1))
  forward = [_by_direction(r['eval'], 'maml', 1.0)[0][1] for r in (other, reference)]
  assert (
    f'returns {after[0]} after one step against {after[1]} at 0.1, and '
    f'{forward[0]:.1f} against {forward[1]:.1f} on the forward goals' in text
  )
  # "does not help": lower after one step, on all goals and on the forward ones.
  assert other['eval']['maml']['mean'][1] < reference['eval']['maml']['mean'][1]
  assert forward[0] < forward[1]


@pytest.mark.parametrize(
  'run, env, label',
  [
    (
      'half_cheetah_direction_reference_observation',
      {'observation': 'reference'},
      ", otherwise that run's training, {minutes} min on the AMD EPYC",
    ),
    (
      'half_cheetah_direction_reference_env',
      {'observation': 'reference', 'velocity': 'centre_of_mass', 'reset': 'reference'},
      ', {minutes} min on the AMD EPYC',
    ),
  ],
)
def test_readme_statement_on_the_reference_environment_runs_matches_them(
  run, env, label
):
  folder, other, text = _locomotion_run_and_readme(run)
  reference = json.loads(
    (folder.parent / 'half_cheetah_direction_reference' / 'results.json').read_text()
  )
  # That run's config but for the environment options named.
  config = checkpoint.with_added_fields(other['config'], train.ADDED_FIELDS)
  base = checkpoint.with_added_fields(reference['config'], train.ADDED_FIELDS)
  assert config == {**base, 'env': {**base['env'], **env}}
  assert other['iterations'] == reference['iterations'] == 101
  assert other['git_dirty'] is False
  assert other['eval']['goals'] == reference['eval']['goals']
  minutes = round(other['train_seconds_total'] / 60)
  assert f'(`{run}`' + label.format(minutes=minutes) in text
  after = (_cell(other['eval']['maml'], 1), _cell(reference['eval']['maml'], 1))
  forward = [_by_direction(r['eval'], 'maml', 1.0)[0][1] for r in (other, reference)]
  assert (
    f'returns {after[0]} after one step against {after[1]}, and '
    f'{forward[0]:.1f} against {forward[1]:.1f} on the forward goals' in text
  )
  # "not the gap": paired by task, one step's return differs by less than its 95% CI.
  diff = (
    np.asarray(other['eval']['per_task']['maml'])[:, 1]
    - np.asarray(reference['eval']['per_task']['maml'])[:, 1]
  )
  assert abs(diff.mean()) < 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))


def test_a_two_direction_policy_gains_most_at_the_rate_it_trained_with():
  run, results, text = _locomotion_run_and_readme('half_cheetah_direction_inner0.2')
  sweep = json.loads((run / 'inner_step_sizes.json').read_text())
  rates = [r['rate'] for r in sweep['by_rate']]
  changes = [r['change']['mean'] for r in sweep['by_rate']]
  assert results['config']['inner_learning_rate'] == sweep['trained_rate'] == 0.2
  assert max(rates) > 0.2 and rates[int(np.argmax(changes))] == 0.2
  assert 'that policy gains most at the rate it trained with' in text


def test_readme_says_whether_the_full_velocity_run_has_finished():
  root = pathlib.Path(__file__).parents[2]
  workdir = root / 'results' / 'meta_rl' / 'full' / 'half_cheetah_velocity_reference'
  assert (workdir / 'RUN.json').exists()
  text = ' '.join((root / 'README.md').read_text().split())
  at = text.index(f'(`{workdir.relative_to(root)}`')
  says_unfinished = 'not finished' in text[at : at + 300]
  # A finished run writes results.json; the README must then report it instead.
  assert says_unfinished == (not (workdir / 'results.json').exists())


def test_readme_statement_on_the_finished_velocity_run_matches_its_results():
  root = pathlib.Path(__file__).parents[2]
  workdir = root / 'results' / 'meta_rl' / 'full' / 'half_cheetah_velocity_reference'
  results = json.loads((workdir / 'results.json').read_text())
  reference = json.loads((workdir / 'reference_results.json').read_text())
  text = ' '.join((root / 'README.md').read_text().split())
  config, ev = results['config'], results['eval']
  assert (config['num_tasks'], config['num_episodes']) == (40, 10)
  assert config['env'] == {
    **config['env'],
    'observation': 'reference',
    'velocity': 'centre_of_mass',
    'reset': 'reference',
  }
  assert config['num_iterations'] == results['iterations'] == 476
  timing = [json.loads(line) for line in (workdir / 'timing.jsonl').open()]
  assert not any(t['git_dirty'] for t in timing)
  minutes = round(results['train_seconds_total'] / 60)
  stretches = {2: 'two', 3: 'three'}[len(timing)]
  assert f'{minutes} min on the AMD EPYC over {stretches} stretches' in text
  maml, random_init = ev['maml'], ev['random_init']
  assert (
    f'on {ev["num_tasks"]} held-out goals it returns {_cell(maml, 0)} before '
    f'adaptation and {_cell(maml, 1)} after one step, a paired gain of '
    f'{_paired_gain(ev, "maml")}' in text
  )
  per_task = np.asarray(ev['per_task']['maml'])
  raised = int((per_task[:, 1] > per_task[:, 0]).sum())
  assert f'raises the return on {raised} of the 40 tasks' in text
  assert (
    f'random initialisation gains {_paired_gain(ev, "random_init")} '
    f'({_cell(random_init, 0)} to {_cell(random_init, 1)})' in text
  )
  # "adapts" / "is met": the paired gain is above zero beyond its 95% CI.
  mean, ci = _paired_change(ev, 'maml')
  assert mean - ci > 0
  ref = reference['policies']['maml']['mean']
  assert f'are {ref[0]:.1f} before and {ref[1]:.1f} after one step' in text
  assert f'its step gains {ref[1] - ref[0]:.1f}, ours {mean:.1f}' in text
