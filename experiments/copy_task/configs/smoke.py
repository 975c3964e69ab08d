"""A seconds-long run of the NTM config with a small memory, for tests and a first
look."""

from experiments.copy_task.configs import ntm


def get_config():
  config = ntm.get_config()
  config.ntm.memory_slots = 16
  config.ntm.controller_size = 20
  config.max_length = 5
  config.batch_size = 2
  config.num_updates = 10
  config.log_every = 5
  config.eval.lengths = (2, 5, 8)
  config.eval.num_sequences = 4
  return config
