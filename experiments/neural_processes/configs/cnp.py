"""The CNP (Garnelo et al., 2018a) with the notebooks' widths: a 4-layer
encoder of 128 and a decoder with two hidden layers of 128. The CNP notebook trains
200,000 iterations at batch 64; here batch 16, as the ANP notebook's models."""

from experiments.neural_processes.configs import base


def get_config(family: str = 'gp_random'):
  config = base.get_config(family)
  config.model = base.ml_collections.ConfigDict(
    {
      'name': 'cnp',
      'encoder_sizes': (128, 128, 128, 128),
      'decoder_sizes': (128, 128),
    }
  )
  config.paper_iterations = 200_000
  return config
