"""The LSTM baseline of Santoro et al. (2016, Table 1) on the MANN's episodes.

An LSTM of 200 units with a linear output, the size both reference
implementations give it (snowkylin/ntm's rnn_size; the MANN's controller), trained
exactly as ``default.py`` trains the MANN.
"""

import ml_collections

from experiments.mann.configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model = ml_collections.ConfigDict({'name': 'lstm', 'controller_size': 200})
  return config
