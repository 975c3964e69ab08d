"""The LSTM baseline of the copy task (Graves et al., 2014, Sec. 4.6, Table 3).

The paper's LSTM has three stacked layers of 256 units (1,352,969 parameters) and
a learning rate of 3e-5. ``jmeta.memory.lstm`` has one layer: here one layer of
256 units (about 275,000 parameters, four times the NTM's 62,000), at the paper's
3e-5. Everything else is the NTM config's: data, batch, RMSProp, clipping and
evaluation.
"""

import ml_collections

from experiments.copy_task.configs import ntm


def get_config() -> ml_collections.ConfigDict:
  config = ntm.get_config()
  config.model = 'lstm'
  del config.ntm
  config.lstm = ml_collections.ConfigDict({'controller_size': 256})
  config.learning_rate = 3e-5
  return config
