"""The latent NP of the ANP notebook (Garnelo et al., 2018b; Kim et al., 2019):
a deterministic path (mean of a 4-layer 128 encoder) beside a latent path (4 layers
of 128, 128 latents), decoder 128-128; 100,000 iterations in the notebook."""

from experiments.neural_processes.configs import base


def get_config(family: str = 'gp_random'):
  config = base.get_config(family)
  config.model = base.ml_collections.ConfigDict(
    {
      'name': 'np',
      'encoder_sizes': (128, 128, 128, 128),
      'latent_sizes': (128, 128, 128, 128),
      'num_latents': 128,
      'decoder_sizes': (128, 128),
    }
  )
  return config
