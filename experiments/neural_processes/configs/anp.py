"""The ANP of the ANP notebook (Kim et al., 2019): the NP of ``np.py`` whose
deterministic path is 8-head cross-attention from each target to the context,
keys and queries through an MLP of x (128-128); no self-attention, as the notebook;
100,000 iterations in the notebook."""

from experiments.neural_processes.configs import base


def get_config(family: str = 'gp_random'):
  config = base.get_config(family)
  config.model = base.ml_collections.ConfigDict(
    {
      'name': 'anp',
      'encoder_sizes': (128, 128, 128, 128),
      'latent_sizes': (128, 128, 128, 128),
      'num_latents': 128,
      'attention_sizes': (128, 128),
      'num_heads': 8,
      'decoder_sizes': (128, 128),
      'self_attention': False,
    }
  )
  return config
