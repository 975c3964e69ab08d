"""A seconds-long MANN run on real Omniglot, for tests and a first look."""

import ml_collections

from experiments.mann.configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model.controller_size = 16
  config.model.memory_slots = 16
  config.model.memory_width = 8
  config.model.read_heads = 2
  config.batch_size = 4
  config.train_episodes = 24  # 6 updates
  config.log_every = 2
  config.checkpoint_every = 3
  config.eval.num_episodes = 8
  config.eval.episodes_per_call = 4
  return config
