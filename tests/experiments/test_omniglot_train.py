"""Tiny end-to-end Omniglot training on the real data (JMETA_OMNIGLOT_DIR)."""

import json
import pathlib
import shutil
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from omniglot_checks import assert_test_record

import jmeta
from experiments.common.checkpoint import CheckpointConfigMismatchError
from experiments.omniglot import learners, train
from experiments.omniglot.configs import imaml, maml_plus_plus, reptile, tiny


def _records(workdir):
  return [json.loads(line) for line in (workdir / 'metrics.jsonl').open()]


def test_loss_falls_and_outputs_are_written(tmp_path):
  config = tiny.get_config()
  config.num_iterations = 60
  # At an outer rate of 3e-3 the last 20 steps' loss was 0.950 and 0.970 of the
  # first 20's with XLA:CPU's YNNPACK fusions on and off: float noise decided the
  # check. At the tiny config's 1e-2 it is 0.91 (fusions off), a margin the check
  # can rely on.
  out = train.train_and_evaluate(config, str(tmp_path))
  losses = [r['train_loss'] for r in _records(tmp_path)]
  # Each log is the mean over 5 steps; the first 20 steps against the last 20.
  assert len(losses) == 12
  assert np.mean(losses[-4:]) < 0.95 * np.mean(losses[:4]), losses
  assert np.log(config.data.n_way) > np.mean(losses[-2:])
  result = json.loads((tmp_path / 'test_step60.json').read_text())
  assert result['iterations'] == 60
  assert_test_record(
    result['test']['8'],
    episodes=8,
    n_way=config.data.n_way,
    q_query=config.data.q_query,
  )
  assert (tmp_path / 'learning_curve.png').stat().st_size > 0
  assert list((tmp_path / 'tensorboard').iterdir())
  assert any('val_accuracy' in r for r in _records(tmp_path))
  chex.assert_tree_all_finite(out['state'].params)


def test_resumed_run_ends_with_the_same_params(tmp_path):
  config = tiny.get_config()
  config.num_iterations = 20
  straight = train.train_and_evaluate(config, str(tmp_path / 'straight'))

  interrupted = tmp_path / 'interrupted'
  config.num_iterations = 10  # stops after the checkpoint at step 10
  first = train.train_and_evaluate(config, str(interrupted))
  config.num_iterations = 20
  resumed = train.train_and_evaluate(config, str(interrupted))

  assert resumed['resumed_from_step'] == 10
  assert not jax.tree.all(
    jax.tree.map(np.array_equal, first['state'].params, straight['state'].params)
  )
  jax.tree.map(
    np.testing.assert_array_equal, resumed['state'].params, straight['state'].params
  )
  jax.tree.map(
    np.testing.assert_array_equal,
    resumed['state'].opt_state,
    straight['state'].opt_state,
  )


def test_checkpoint_from_another_config_is_refused(tmp_path):
  config = tiny.get_config()
  config.num_iterations = 10
  train.train_and_evaluate(config, str(tmp_path))
  config.num_iterations = 20  # not complete at 20: the checkpoint would resume
  config.inner_learning_rate = 0.5
  with pytest.raises(
    CheckpointConfigMismatchError,
    match='inner_learning_rate: checkpoint has 2.0, config has 0.5',
  ):
    train.train_and_evaluate(config, str(tmp_path))


def test_bad_config_values_are_named(tmp_path):
  config = tiny.get_config()
  config.algorithm = 'protonets'
  with pytest.raises(ValueError, match="config.algorithm = 'protonets'"):
    train.train_and_evaluate(config, str(tmp_path))
  config = tiny.get_config()
  config.eval.extra_n_ways = (20,)
  with pytest.raises(ValueError, match='classifier head'):
    train.train_and_evaluate(config, str(tmp_path / 'a'))
  config = tiny.get_config()
  config.data.n_way = 2000
  with pytest.raises(ValueError, match='n_way'):
    train.train_and_evaluate(config, str(tmp_path / 'b'))


def test_command_line_rejects_misspelled_and_mistyped_fields(tmp_path):
  base = [
    sys.executable,
    '-m',
    'experiments.omniglot.main',
    f'--workdir={tmp_path}',
    '--config=experiments/omniglot/configs/tiny.py:5w1s',
  ]
  repo = pathlib.Path(__file__).parents[2]
  misspelled = subprocess.run(
    base + ['--config.inner_stepz=2'], capture_output=True, text=True, cwd=repo
  )
  assert misspelled.returncode != 0 and 'inner_stepz' in misspelled.stderr
  mistyped = subprocess.run(
    base + ['--config.inner_steps=two'], capture_output=True, text=True, cwd=repo
  )
  assert mistyped.returncode != 0 and 'inner_steps' in mistyped.stderr
  assert not (tmp_path / 'checkpoints').exists()


def test_command_line_shards_over_cpu_devices_along_the_same_trajectory(tmp_path):
  config = tiny.get_config()
  config.num_iterations = 10
  one = train.train_and_evaluate(config, str(tmp_path / 'one'))
  command = [
    sys.executable,
    '-m',
    'experiments.omniglot.main',
    f'--workdir={tmp_path / "two"}',
    '--config=experiments/omniglot/configs/tiny.py:5w1s',
    '--config.num_iterations=10',
    '--cpu_devices=2',
  ]
  repo = pathlib.Path(__file__).parents[2]
  proc = subprocess.run(command, capture_output=True, text=True, cwd=repo, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  two = json.loads((tmp_path / 'two' / 'test_step10.json').read_text())
  assert (one['train_devices'], two['train_devices']) == (1, 2)
  assert 'sharding the meta-batch of 4 tasks over 2 of 2 cpu devices' in proc.stderr
  # The same episodes; the two blocks' means are averaged, so only float
  # summation order differs.
  np.testing.assert_allclose(
    [r['train_loss'] for r in _records(tmp_path / 'two')],
    [r['train_loss'] for r in _records(tmp_path / 'one')],
    rtol=1e-4,
  )
  bad = subprocess.run(
    command[:-1] + ['--cpu_devices=-1'], capture_output=True, text=True, cwd=repo
  )
  assert bad.returncode != 0 and '--cpu_devices must be >= 0' in bad.stderr


def test_meta_gradient_comparison_is_logged_along_training(tmp_path):
  config = tiny.get_config()
  config.compare_every = 10
  train.train_and_evaluate(config, str(tmp_path))
  entries = [json.loads(line) for line in (tmp_path / 'compare.jsonl').open()]
  assert [e['step'] for e in entries] == [0, 10, 20, 30]
  for entry in entries:
    names = {'fomaml', 'reptile', 'imaml', 'maml++', 'maml++_first_order'}
    assert set(entry) == {'step'} | names
    for name in names:
      values = entry[name]
      assert -1 <= values['cosine'] <= 1 and values['norm_ratio'] > 0
      layers = [k for k in values if k.startswith('layer/')]
      assert 'layer/head' in layers and 'layer/block_0/w' in layers
  # First-order MAML drops a term of MAML's gradient: the two differ.
  assert entries[-1]['fomaml']['relative_error'] > 1e-3
  # One inner step: the multi-step loss is the final loss, so MAML++ is MAML and
  # MAML++ at first order is first-order MAML.
  assert entries[-1]['maml++']['relative_error'] < 1e-5
  np.testing.assert_allclose(
    entries[-1]['maml++_first_order']['cosine'],
    entries[-1]['fomaml']['cosine'],
    atol=1e-5,
  )

  # A learner whose meta-params hold more than the Conv4's params is refused.
  config = tiny.get_config()
  config.algorithm = 'meta_sgd'
  config.compare_every = 10
  with pytest.raises(ValueError, match="compare_every .* 'meta_sgd' trains MetaParams"):
    train.train_and_evaluate(config, str(tmp_path / 'meta_sgd'))


@pytest.mark.parametrize(
  ('algorithm', 'comparable'),
  [('reptile', True), ('anil', True), ('imaml', True), ('meta_sgd', False)],
)
def test_meta_gradients_compare_at_the_params_of_any_learner_that_trains_them(
  algorithm, comparable
):
  configs = {'reptile': reptile, 'imaml': imaml}
  config = (
    configs[algorithm].get_config() if algorithm in configs else tiny.get_config()
  )
  config.algorithm = algorithm
  learner = learners.make_learner(config)
  x = jnp.zeros((5, 28, 28, 1), jnp.float32)
  meta_params = learner.init(jax.random.key(0), x)
  if comparable:
    train.check_comparable(config, learner, meta_params, x)
  else:
    with pytest.raises(ValueError, match=f"'{algorithm}' trains MetaParams"):
      train.check_comparable(config, learner, meta_params, x)


@pytest.mark.parametrize('algorithm', ['imaml', 'meta_sgd', 'anil'])
def test_more_gradient_learners_train_on_omniglot(tmp_path, algorithm):
  config = tiny.get_config()
  config.algorithm = algorithm
  if algorithm == 'imaml':
    full = imaml.get_config()
    config.imaml = full.imaml
    config.inner_steps, config.eval.inner_steps = 2, 2
    config.inner_learning_rate = full.inner_learning_rate
  config.num_iterations = 60
  out = train.train_and_evaluate(config, str(tmp_path))
  losses = [r['train_loss'] for r in _records(tmp_path)]
  assert len(losses) == 12 and np.all(np.isfinite(losses))
  if algorithm != 'imaml':
    # Each log is the mean over 5 steps; the first 20 steps against the last 20.
    # The tiny Conv4 learns slowly with these learners (their unit tests check
    # learning); this checks the runner's wiring end to end. iMAML's loss on the
    # tiny Conv4 stays within noise of chance for 60-120 iterations in every
    # setting tried, so for it this test checks the run completes and is finite.
    assert np.mean(losses[-4:]) < 0.99 * np.mean(losses[:4]), losses
  result = json.loads((tmp_path / 'test_step60.json').read_text())
  assert_test_record(
    result['test']['8'],
    episodes=8,
    n_way=config.data.n_way,
    q_query=config.data.q_query,
  )
  chex.assert_tree_all_finite(out['state'].params)


def _proximal_imaml():
  """The imaml config with the paper's proximal inner loop, not the pull-back."""
  config = imaml.get_config()
  config.imaml = ml_collections.ConfigDict({'regularization': 2.0, 'cg_steps': 5})
  config.eval.inner_steps = 5
  return config


def test_imaml_inner_rate_that_diverges_is_refused_before_training(tmp_path):
  config = _proximal_imaml()
  config.inner_learning_rate = 2.0  # MAML's: 2.0 * lambda = 4 >= 2
  with pytest.raises(
    ValueError, match=r'config.inner_learning_rate = 2.0\b.*inner_steps'
  ):
    train.train_and_evaluate(config, str(tmp_path / 'train'))
  config = _proximal_imaml()
  config.inner_steps = 1  # one step starts at phi = theta: fine for training
  config.inner_learning_rate = 2.0
  with pytest.raises(ValueError, match=r'config.eval.inner_steps = 5'):
    train.train_and_evaluate(config, str(tmp_path / 'eval'))
  assert not (tmp_path / 'eval' / 'metrics.jsonl').exists()


def _tiny_maml_plus_plus():
  config = maml_plus_plus.get_config()
  small = tiny.get_config()
  for field in ('meta_batch_size', 'log_every', 'checkpoint_every', 'eval_every'):
    config[field] = small[field]
  config.model.filters = small.model.filters
  config.eval = small.eval
  config.eval.inner_steps = 5
  config.inner_steps = 2
  # The tiny Conv4 needs larger inner steps and more queries than the paper's to
  # learn visibly in 40 iterations.
  config.inner_learning_rate = 1.0
  config.data.q_query = 5
  config.outer_learning_rate = 3e-3
  config.num_iterations = 40
  # Every schedule changes phase inside the run: multi-step loss until 20, first
  # order until 10.
  config.maml_plus_plus.msl_anneal_iterations = 20
  config.maml_plus_plus.derivative_order_annealing_iterations = 10
  return config


@pytest.fixture(scope='module')
def maml_plus_plus_run(tmp_path_factory):
  """The tiny MAML++ run (its cosine schedule anneals over all 40 iterations), trained
  once for the tests that read it: ``(workdir, output)``."""
  workdir = tmp_path_factory.mktemp('maml_plus_plus')
  return workdir, train.train_and_evaluate(_tiny_maml_plus_plus(), str(workdir))


def test_maml_plus_plus_trains_on_omniglot(maml_plus_plus_run):
  config = _tiny_maml_plus_plus()
  workdir, out = maml_plus_plus_run
  losses = [r['train_loss'] for r in _records(workdir)]
  assert np.mean(losses[-3:]) < 0.95 * np.mean(losses[:3]), losses
  params = out['state'].params
  assert isinstance(params, jmeta.MAMLPlusPlusParams)
  # Learned per-layer, per-step rates moved from their start; every batch-norm
  # scale has K + 1 = 3 per-step copies.
  rates = jax.tree.leaves(params.learning_rates)
  assert all(r.shape == (2,) for r in rates)
  assert any(
    np.abs(np.asarray(r) - config.inner_learning_rate).max() > 1e-4 for r in rates
  )
  assert params.step_weights['block_0']['scale'].shape == (3, 8)
  assert params.init['block_0']['scale'] is None
  result = json.loads((workdir / 'test_step40.json').read_text())
  assert_test_record(
    result['test']['8'],
    episodes=8,
    n_way=config.data.n_way,
    q_query=config.data.q_query,
  )


def test_cosine_schedule_anneals_the_meta_rate_to_its_floor():
  config = _tiny_maml_plus_plus()
  config.outer_optimizer = 'sgd'
  config.num_iterations = 10
  opt = train.outer_optimizer(config)
  params = {'w': np.ones((), np.float32)}
  state = opt.init(params)
  steps = []
  for _ in range(config.num_iterations + 1):
    update, state = opt.update({'w': np.ones((), np.float32)}, state)
    steps.append(-float(update['w']))
  np.testing.assert_allclose(steps[0], config.outer_learning_rate, rtol=1e-6)
  # Half way, the half cosine is at its mean: (lr + floor) / 2.
  halfway = (config.outer_learning_rate + config.outer_min_learning_rate) / 2
  np.testing.assert_allclose(steps[5], halfway, rtol=1e-5)
  np.testing.assert_allclose(steps[-1], config.outer_min_learning_rate, rtol=1e-5)


def test_outer_clip_norm_clips_the_meta_gradient_to_that_global_norm():
  config = tiny.get_config()
  config.outer_optimizer = 'sgd'
  config.outer_learning_rate = 0.5
  grads = {'a': np.full((3,), 4.0, np.float32), 'b': np.full((), 3.0, np.float32)}
  norm = float(np.sqrt(3 * 16 + 9))
  for clip, want in ((0.0, norm), (2.0, 2.0), (100.0, norm)):
    config.outer_clip_norm = clip
    opt = train.outer_optimizer(config)
    update, _ = opt.update(grads, opt.init(grads))
    got = float(np.sqrt(sum(np.sum(np.square(u)) for u in update.values())))
    np.testing.assert_allclose(got, 0.5 * want, rtol=1e-6)
  config.outer_clip_norm = -1.0
  with pytest.raises(ValueError, match='config.outer_clip_norm must be >= 0'):
    train.check_config(config)


def test_annealed_schedule_refuses_resume_with_other_length(
  maml_plus_plus_run, tmp_path
):
  # The MAML++ run's cosine schedule anneals over its 40 iterations; a copy of it,
  # so the shared run stays as it was.
  workdir = shutil.copytree(maml_plus_plus_run[0], tmp_path / 'run')
  config = _tiny_maml_plus_plus()
  assert config.outer_schedule == 'cosine'
  config.num_iterations = 80
  with pytest.raises(CheckpointConfigMismatchError, match='num_iterations'):
    train.train_and_evaluate(config, str(workdir))


def test_out_of_memory_in_a_run_names_the_config_fields():
  config = maml_plus_plus.get_config()
  huge = jax.jit(lambda x: jax.numpy.zeros((2**38,), jax.numpy.float32) + x)
  with pytest.raises(jmeta.MetaStepOutOfMemoryError) as info:
    with train._explain_out_of_memory(config):
      huge(1.0)
  message = str(info.value)
  for field in (
    '--config.batching=chunked',
    '--config.remat=True',
    'derivative_order_annealing_iterations',
    '--config.meta_batch_size (now 8)',
    '--config.eval.episodes_per_call',
  ):
    assert field in message, field
  # Each named field exists, so the suggested override parses.
  assert config.remat is False and config.chunk_size > 0
  # Other errors are not rewritten.
  with pytest.raises(ValueError, match='unrelated'):
    with train._explain_out_of_memory(config):
      raise ValueError('unrelated')


def test_bfloat16_compute_trains_with_float32_params(tmp_path):
  config = tiny.get_config()
  config.model.compute_dtype = 'bfloat16'
  config.num_iterations = 10
  out = train.train_and_evaluate(config, str(tmp_path))
  assert all(p.dtype == np.float32 for p in jax.tree.leaves(out['state'].params))
  assert all(np.isfinite(r['train_loss']) for r in _records(tmp_path))
  config.model.compute_dtype = 'float8'
  with pytest.raises(ValueError, match='config.model.compute_dtype'):
    train.train_and_evaluate(config, str(tmp_path / 'bad'))


def _tiny_reptile():
  """The reptile config (10-shot training episodes, inner minibatches) made tiny."""
  config = reptile.get_config('5w1s')
  small = tiny.get_config()
  for field in ('num_iterations', 'log_every', 'checkpoint_every', 'eval_every'):
    config[field] = small[field]
  config.model.filters = small.model.filters
  config.eval.inner_steps = 10
  for field in ('val_episodes', 'test_episodes', 'episodes_per_call'):
    config.eval[field] = small.eval[field]
  return config


def test_reptile_trains_on_ten_shot_episodes_in_minibatches(tmp_path):
  config = _tiny_reptile()
  bank = jax.numpy.zeros((30, 20, 28, 28), jax.numpy.uint8)
  episode = train.make_sampler(config, bank, train=True).sample(jax.random.key(0), 1)
  assert episode.support_inputs.shape[1] == 5 * 10  # 10 shots per class
  test_episode = train.make_sampler(config, bank).sample(jax.random.key(0), 1)
  assert test_episode.support_inputs.shape[1] == 5 * 1
  config.num_iterations = 60
  # The paper's 5 Adam steps at 1e-3 barely move the tiny Conv4 in 60 iterations.
  config.inner_learning_rate = 1e-2
  out = train.train_and_evaluate(config, str(tmp_path))
  losses = [r['train_loss'] for r in _records(tmp_path)]
  assert len(losses) == 12 and np.all(np.isfinite(losses))
  assert np.mean(losses[-4:]) < 0.95 * np.mean(losses[:4]), losses
  result = json.loads((tmp_path / 'test_step60.json').read_text())
  # The same params tested 1-shot and, as the config asks, 5-shot.
  assert config.eval.extra_k_shots == (5,)
  for record in (result['test']['8'], result['test_extra_shots']['5']['8']):
    assert_test_record(
      record, episodes=8, n_way=config.data.n_way, q_query=config.data.q_query
    )
  assert result['test'] != result['test_extra_shots']['5']
  chex.assert_tree_all_finite(out['state'].params)


def test_reptile_resumes_with_its_carried_inner_adam_state(tmp_path):
  config = _tiny_reptile()
  assert config.persistent_inner_state  # the reference code's, in the config
  # A schedule annealed over the run's length refuses a resume at another length.
  config.outer_schedule = 'constant'
  # Small: the state's checkpoint round trip is what is tested here.
  config.eval.extra_k_shots = ()
  config.checkpoint_every = config.log_every = config.eval_every = 2
  config.num_iterations = 4
  straight = train.train_and_evaluate(config, str(tmp_path / 'straight'))
  inner = straight['state'].params.inner_state[0]
  # Adam's step count: every inner step of every task of every update.
  assert int(inner.count) == 4 * config.meta_batch_size * config.inner_steps
  config.num_iterations = 2  # stops after the checkpoint at step 2
  train.train_and_evaluate(config, str(tmp_path / 'interrupted'))
  config.num_iterations = 4
  resumed = train.train_and_evaluate(config, str(tmp_path / 'interrupted'))
  assert resumed['resumed_from_step'] == 2
  jax.tree.map(
    np.testing.assert_array_equal, resumed['state'].params, straight['state'].params
  )
  assert resumed['test'] == straight['test']


def test_inner_batch_sizes_the_episodes_cannot_fill_are_named(tmp_path):
  config = _tiny_reptile()
  config.eval.inner_batch_size = 6  # a 5-way 1-shot test episode has 5 images
  with pytest.raises(
    ValueError, match=r'config.eval.inner_batch_size = 6 .* 5 support'
  ):
    train.train_and_evaluate(config, str(tmp_path))
  config = _tiny_reptile()
  config.data.k_shot, config.eval.extra_k_shots = 5, (1,)  # the 1-shot test: 5 images
  config.eval.inner_batch_size = 6
  with pytest.raises(
    ValueError, match=r'config.eval.inner_batch_size = 6 .* 5 support'
  ):
    train.train_and_evaluate(config, str(tmp_path))
  config = _tiny_reptile()
  config.eval.extra_k_shots = (0,)
  with pytest.raises(ValueError, match=r'extra_k_shots = \(0,\) must be a tuple of'):
    train.train_and_evaluate(config, str(tmp_path))
  config = _tiny_reptile()
  config.inner_batch_size = 51  # 5 ways x 10 training shots
  with pytest.raises(ValueError, match=r'config.inner_batch_size = 51 .* 50 support'):
    train.train_and_evaluate(config, str(tmp_path))
  config = _tiny_reptile()
  config.algorithm = 'maml_plus_plus'  # its per-step losses need the whole support set
  config.inner_optimizer = 'sgd'
  with pytest.raises(
    ValueError, match='inner_batch_size = 10 does not apply to maml_plus_plus'
  ):
    train.train_and_evaluate(config, str(tmp_path))


def test_reference_maml_network_fields_build_maml_s_own_network(tmp_path):
  config = tiny.get_config()
  config.model.batch_norm_scale = False
  config.model.batch_norm_eps = 1e-3
  config.model.head_init = 'normal'
  config.inner_adapts = 'all_but_batch_norm_offsets'
  init, learner, model = learners.build(config, config.data.n_way)
  images = jax.random.normal(jax.random.key(0), (2, 2 * config.data.n_way, 28, 28, 1))
  labels = jnp.tile(jnp.arange(config.data.n_way), (2, 2))
  n = config.data.n_way
  batch = jmeta.TaskBatch(images[:, :n], labels[:, :n], images[:, n:], labels[:, n:])
  params = init(jax.random.key(1), images[0])
  assert all('scale' not in params[f'block_{i}'] for i in range(4))
  direct = jmeta.maml(
    jmeta.conv4(
      n,
      filters=config.model.filters,
      batch_norm_scale=False,
      batch_norm_eps=1e-3,
      head_init='normal',
    ),
    jmeta.losses.cross_entropy,
    inner_steps=config.inner_steps,
    inner_learning_rate=config.inner_learning_rate,
    adapts=jmeta.models.excluding_batch_norm_offsets,
  )
  want, _ = jax.jit(direct.meta_gradient)(params, batch)
  got, _ = jax.jit(learner.meta_gradient)(params, batch)
  chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)


def test_block_init_field_builds_the_torch_2017_network(tmp_path):
  config = tiny.get_config()
  config.model.block_init = 'torch_2017'
  init, _, _ = learners.build(config, config.data.n_way)
  images = jnp.zeros((2 * config.data.n_way, 28, 28, 1))
  direct = jmeta.conv4(
    config.data.n_way, filters=config.model.filters, block_init='torch_2017'
  )
  chex.assert_trees_all_equal(
    init(jax.random.key(1), images), direct.init(jax.random.key(1), images)
  )
  config.model.block_init = 'kaiming'
  with pytest.raises(ValueError, match="config.model.block_init = 'kaiming'"):
    train.train_and_evaluate(config, str(tmp_path))


def test_conv4_fields_are_refused_for_a_learner_with_its_own_network():
  from experiments.omniglot.configs import meta_networks

  train.check_config(meta_networks.get_config('5w1s'))  # the defaults pass
  for field, value in (('block_init', 'torch_2017'), ('batch_norm_eps', 1e-3)):
    config = meta_networks.get_config('5w1s')
    config.model[field] = value
    with pytest.raises(ValueError, match=f'config.model.{field} = .* applies to Conv4'):
      train.check_config(config)


def test_fields_added_since_older_runs_default_to_what_those_runs_trained_with():
  from experiments.omniglot.configs import base

  flat = base.get_base_config('5w1s').to_dict()
  for key, value in train.ADDED_FIELDS.items():
    node = flat
    for part in key.split('.'):
      node = node[part]
    assert node == value, key


def test_bad_reference_network_fields_are_named(tmp_path):
  config = tiny.get_config()
  config.model.head_init = 'zeros'
  with pytest.raises(ValueError, match="config.model.head_init = 'zeros'"):
    train.train_and_evaluate(config, str(tmp_path / 'a'))
  config = tiny.get_config()
  config.inner_adapts = 'head'
  with pytest.raises(ValueError, match="config.inner_adapts = 'head'"):
    train.train_and_evaluate(config, str(tmp_path / 'b'))
  config = reptile.get_config()
  config.inner_adapts = 'all_but_batch_norm_offsets'
  with pytest.raises(ValueError, match='config.inner_adapts'):
    learners.build(config, config.data.n_way)


def test_matmul_precision_reaches_every_matmul_and_convolution_of_the_step():
  config = tiny.get_config()
  learner = learners.make_learner(config)
  bank = jnp.zeros((10, 20, 28, 28), jnp.uint8)
  batch = train.make_sampler(config, bank, train=True).sample(
    jax.random.key(0), config.meta_batch_size
  )
  trainer = jmeta.make_meta_trainer(learner.estimator, train.outer_optimizer(config))
  state = trainer.init(learner.init(jax.random.key(0), batch.support_inputs[0]))

  def precisions(value):
    config.model.matmul_precision = value
    with train.matmul_precision(config):
      text = jax.jit(trainer.step).lower(state, batch).as_text()
    ops = [
      line
      for line in text.splitlines()
      if 'dot_general' in line or 'convolution' in line
    ]
    assert ops
    return {p for p in ('DEFAULT', 'HIGHEST') if any(p in line for line in ops)}

  assert precisions('default') == {'DEFAULT'}
  assert precisions('highest') == {'HIGHEST'}
  config.model.matmul_precision = 'tf32'
  with pytest.raises(ValueError, match='config.model.matmul_precision'):
    train.check_config(config)
