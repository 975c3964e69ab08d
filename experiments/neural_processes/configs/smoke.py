"""A seconds-long run with tiny widths, for tests and a first look:
``smoke.py:anp:gp_random`` (model, then family)."""

from experiments.neural_processes.configs import anp, cnp, maml
from experiments.neural_processes.configs import np as latent

CONFIGS = {'cnp': cnp, 'np': latent, 'anp': anp, 'maml': maml}


def get_config(arg: str = 'anp:gp_random'):
  model, _, family = arg.partition(':')
  if model not in CONFIGS:
    raise ValueError(f'smoke config: model must be one of {tuple(CONFIGS)}.')
  config = CONFIGS[model].get_config(family or 'gp_random')
  m = config.model
  if model == 'maml':
    m.hidden_sizes = (8, 8)
    m.test_steps = 2
  else:
    m.encoder_sizes, m.decoder_sizes = (16, 16), (16,)
    if model != 'cnp':
      m.latent_sizes, m.num_latents = (16, 16), 4
    if model == 'anp':
      m.attention_sizes, m.num_heads = (16,), 2
  config.batch_size = 4
  config.context_sizes = (3, 5)
  config.extra_targets = 4
  config.num_iterations = 6
  config.log_every = 2
  config.checkpoint_every = 4
  config.eval.num_tasks = 8
  config.eval.context_sizes = (2, 5)
  config.eval.num_targets = 6
  config.eval.num_samples = 4
  config.eval.tasks_per_call = 4
  config.eval.plot_tasks = 2
  config.eval.plot_context = 3
  config.eval.plot_points = 20
  config.eval.plot_samples = 2
  return config
