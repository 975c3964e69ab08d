"""The inner-step-size sweep, on the smoke config's sizes, against the step
computed one task at a time with the library's own functions."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags

from experiments.meta_rl import cosines, inner_step_sizes, train
from experiments.meta_rl.configs import smoke
from jmeta import rl

RATES = [0.0, 0.01, 0.02, 0.1]
SMOKE = pathlib.Path(smoke.__file__)
SEED = 5


@pytest.fixture(scope='module')
def setup():
  config = smoke.get_config()
  config.env.horizon = 20
  policy = train.make_policy(config)
  params = policy.init(jax.random.key(0))
  sweep = inner_step_sizes.step_size_sweep(
    config, params, RATES, tasks=3, episodes=4, seed=SEED
  )
  return config, policy, params, sweep


def one_task_by_hand(config, policy, params, index: int, rate: float):
  """Task ``index`` of the sweep, stepped by ``rl.policy_gradient_step`` at ``rate``."""
  env = train.make_env(config)
  key = jax.random.key(SEED)
  task = jax.tree.map(
    lambda x: x[index], rl.sample_tasks(env, jax.random.fold_in(key, 0), 3)
  )
  task_key = jax.random.split(jax.random.fold_in(key, 1), 3)[index]
  batch = rl.rollouts(env, policy, params, task, jax.random.fold_in(task_key, 0), 4)
  advantages = rl.estimate_advantages(batch, train.settings(config))
  stepped = rl.policy_gradient_step(policy, params, batch, advantages, rate)
  kl = policy.kl(params, stepped, batch.observations)
  after = rl.rollouts(env, policy, stepped, task, jax.random.fold_in(task_key, 1), 4)
  return (
    float(jnp.mean(rl.episode_returns(batch))),
    float(jnp.mean(rl.episode_returns(after))),
    float(jnp.sum(kl * batch.valid) / jnp.sum(batch.valid)),
  )


@pytest.mark.parametrize('index, rate', [(0, 0.1), (2, 0.02)])
def test_the_vectorized_sweep_equals_one_task_stepped_by_hand(setup, index, rate):
  config, policy, params, sweep = setup
  before, after, kl = one_task_by_hand(config, policy, params, index, rate)
  column = RATES.index(rate)
  assert float(sweep['return_before'][index]) == pytest.approx(before, rel=1e-5)
  assert float(sweep['return_after'][index, column]) == pytest.approx(after, rel=1e-4)
  assert float(sweep['kl'][index, column]) == pytest.approx(kl, rel=1e-3)


def test_the_kl_is_zero_without_a_step_and_quadratic_in_a_small_one(setup):
  *_, sweep = setup
  kl = np.asarray(sweep['kl'])
  np.testing.assert_array_equal(kl[:, 0], 0.0)
  # KL(theta || theta + a g) = a^2 g'Fg / 2 + O(a^3): doubling a small step
  # multiplies it by 4.
  np.testing.assert_allclose(kl[:, 2] / kl[:, 1], 4.0, rtol=0.05)
  assert np.all(kl[:, 3] > kl[:, 2])


def test_the_command_writes_paired_changes_and_refuses_negative_rates(
  tmp_path, monkeypatch
):
  config = smoke.get_config()
  params = train.make_policy(config).init(jax.random.key(0))
  load = cosines.load
  monkeypatch.setattr(
    cosines,
    'load',
    lambda workdir, other=None: (
      load(workdir, other) if workdir is None else (config, params, 7)
    ),
  )
  # Other tests in this process may have defined flags of these names (absl's
  # FLAGS is global): set them aside while the command's own are defined.
  names = ('workdir', 'config', 'out', 'rates', 'tasks', 'episodes', 'seed')
  saved = {n: flags.FLAGS[n] for n in names if n in flags.FLAGS}
  for name in saved:
    delattr(flags.FLAGS, name)
  inner_step_sizes.define_flags()
  out = tmp_path / 'sweep.json'
  try:
    flags.FLAGS(
      [
        'inner_step_sizes',
        f'--workdir={tmp_path}',
        f'--out={out}',
        '--rates=0.05',
        '--tasks=2',
      ]
    )
    inner_step_sizes.main(['inner_step_sizes'])
    result = json.loads(out.read_text())
    # Rate 0 and the trained rate are added to the one asked for.
    assert [r['rate'] for r in result['by_rate']] == [0.0, 0.05, 0.1]
    assert result['step'] == 7 and result['episodes'] == config.eval.num_episodes
    no_step = result['by_rate'][0]
    assert no_step['change'] == {'mean': 0.0, 'ci95': 0.0}
    assert '| 0.1 (trained with) |' in out.with_suffix('.md').read_text()
    # Without a workdir, a config's initial policy: step 0, this config's sizes.
    flags.FLAGS['workdir'].value = None
    flags.FLAGS['config'].parse(str(SMOKE))
    flags.FLAGS.out = str(tmp_path / 'init.json')
    inner_step_sizes.main(['inner_step_sizes'])
    at_init = json.loads((tmp_path / 'init.json').read_text())
    assert at_init['step'] == 0 and at_init['workdir'] is None
    assert at_init['config']['policy']['hidden_sizes'] == [8]
    flags.FLAGS.rates = ['-0.1']
    flags.FLAGS.out = str(tmp_path / 'other.json')
    with pytest.raises(Exception, match='must not be negative'):
      inner_step_sizes.main(['inner_step_sizes'])
  finally:
    for name in names:
      delattr(flags.FLAGS, name)
    for name, flag in saved.items():
      flags.FLAGS[name] = flag
