"""The MAML-RL estimator cosines, on the smoke config's sizes."""

import jax
import numpy as np
import pytest
from absl import app

from experiments.meta_rl import cosines, train
from experiments.meta_rl.configs import smoke
from jmeta import rl


@pytest.fixture(scope='module')
def measured():
  config = smoke.get_config()
  params = train.make_policy(config).init(jax.random.key(0))
  return cosines.estimator_cosines(config, params, batches=4, seed=7)['estimators']


def test_every_estimator_is_compared_on_the_same_batches(measured):
  assert list(measured) == list(rl.ESTIMATORS)
  exact = measured['dice_full']
  # Same batches, same estimator: identical vectors.
  np.testing.assert_allclose(
    exact['cosine_to_dice_full_same_batch']['values'], 1.0, rtol=1e-12
  )
  np.testing.assert_allclose(
    exact['norm_ratio_to_dice_full_same_batch']['values'], 1.0, rtol=1e-12
  )
  for name, row in measured.items():
    assert row['cosine_of_means'][name] == pytest.approx(1.0, abs=1e-12)
    values = np.asarray(row['cosine_to_own_mean']['values'])
    assert values.shape == (4,) and np.all(np.abs(values) <= 1.0 + 1e-12), name
    # Sampling noise: no batch's estimate is the mean of the others'.
    assert np.all(values < 1 - 1e-6), name
    if name != 'dice_full':
      # Another estimator differs from the exact one on the same episodes.
      assert np.all(
        np.asarray(row['cosine_to_dice_full_same_batch']['values']) < 1 - 1e-6
      ), name


def test_cosines_between_means_are_symmetric(measured):
  for a in measured:
    for b in measured:
      assert measured[a]['cosine_of_means'][b] == pytest.approx(
        measured[b]['cosine_of_means'][a], abs=1e-12
      )


def test_too_few_batches_are_refused():
  config = smoke.get_config()
  params = train.make_policy(config).init(jax.random.key(0))
  with pytest.raises(app.UsageError, match='--batches'):
    cosines.estimator_cosines(config, params, batches=3, seed=0)


def test_load_reads_a_runs_checkpoint(tmp_path):
  config = smoke.get_config()
  config.num_iterations = 2
  trained = train.train_and_evaluate(config, str(tmp_path / 'run'))
  _, params, step = cosines.load(tmp_path / 'run')
  assert step == 2
  jax.tree.map(np.testing.assert_array_equal, params, trained['state'].params)
  cosines.plot([{'step': step, **cosines_row()}], tmp_path / 'plot.png')
  assert (tmp_path / 'plot.png').stat().st_size > 0


def cosines_row():
  one = {'mean': 0.5, 'ci95': 0.1, 'values': [0.5]}
  return {
    'estimators': {
      n: {'cosine_to_own_mean': one, 'cosine_to_dice_full_same_batch': one}
      for n in rl.ESTIMATORS
    }
  }
