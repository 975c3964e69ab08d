"""Checks of an Omniglot run's test record that hold whatever the accuracy is."""

import numpy as np


def assert_test_record(record: dict, *, episodes: int, n_way: int, q_query: int):
  """The record of ``episodes`` test episodes is consistent with itself.

  Every episode's accuracy is a count of correct queries over its ``n_way *
  q_query`` queries; the mean and the 95% interval are those of the episodes.
  """
  per_episode = np.asarray(record['episode_accuracies'])
  assert per_episode.shape == (episodes,)
  correct = per_episode * n_way * q_query
  np.testing.assert_allclose(correct, np.round(correct), atol=1e-4)
  assert np.all((per_episode >= 0) & (per_episode <= 1))
  np.testing.assert_allclose(record['accuracy'], per_episode.mean(), rtol=1e-6)
  half = 1.959964 * per_episode.std(ddof=1) / np.sqrt(episodes)
  np.testing.assert_allclose(record['ci95'], half, rtol=1e-5)
