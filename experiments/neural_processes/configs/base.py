"""Shared settings of the neural-process experiment, per task family.

The ANP notebook's protocol (DeepMind's neural-processes repository, Kim et al.,
2019): batches of 16 tasks, Adam at 1e-4, widths 128, targets that include the
context, 100,000 iterations (the CNP notebook: 200,000 at batch 64, with at most
10 context points). The notebook draws the context size uniformly in [3, 49] and
recompiles nothing (TensorFlow's shapes are dynamic); under ``jit`` each size is a
compilation (10-40 s each on the shared 2-core CPU), so here it is drawn uniformly
from ``context_sizes`` (3, 10, 25, 50; the evaluation's 5 and 20 lie between
them), and every task adds ``extra_targets`` = 25 points beyond its context (the
notebook: 0 to 48 - context).

Evaluation: ``eval.num_tasks`` held-out tasks drawn with ``eval.seed``, each with
50 context candidates (the first n of them for n in ``eval.context_sizes``) and
``eval.num_targets`` separate target points, the same for every run of a family.

  python -m experiments.neural_processes.main \
      --config=experiments/neural_processes/configs/anp.py:gp_random \
      --workdir=runs/np/anp_gp_random
"""

import math

import ml_collections

FAMILIES = ('gp_fixed', 'gp_random', 'sinusoid')


def data_config(family: str) -> ml_collections.ConfigDict:
  if family not in FAMILIES:
    raise ValueError(f'family must be one of {FAMILIES}, got {family!r}.')
  if family == 'sinusoid':
    # jmeta.sinusoid_tasks' family (Finn et al., 2017); no observation noise.
    return ml_collections.ConfigDict(
      {
        'family': family,
        'amplitude': (0.1, 5.0),
        'phase': (0.0, math.pi),
        'x_range': (-5.0, 5.0),
      }
    )
  random = family == 'gp_random'
  return ml_collections.ConfigDict(
    {
      'family': family,
      # The CNP notebook's fixed kernel, or the ANP notebook's per-task draw.
      'length_scale': (0.1, 0.6) if random else 0.4,
      'signal_std': (0.1, 1.0) if random else 1.0,
      'noise_std': 0.02,
      'x_range': (-2.0, 2.0),
    }
  )


def get_config(family: str = 'gp_random') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = data_config(family)
  config.model = ml_collections.ConfigDict({'name': 'cnp'})
  config.batch_size = 16
  config.learning_rate = 1e-4
  config.context_sizes = (3, 10, 25, 50)
  config.extra_targets = 25
  config.num_iterations = 100_000
  # The paper's (notebook's) iterations, for the README's budget label.
  config.paper_iterations = 100_000
  config.log_every = 100
  config.checkpoint_every = 1_000

  config.eval = ml_collections.ConfigDict()
  config.eval.seed = 1_000_003  # a key stream disjoint from training's
  config.eval.num_tasks = 500
  config.eval.context_sizes = (5, 10, 20, 50)
  config.eval.num_targets = 50
  # Draws of z per task for a latent model's log-likelihood (a log-mean-exp).
  config.eval.num_samples = 32
  config.eval.tasks_per_call = 100
  config.eval.plot_tasks = 3
  config.eval.plot_context = 10
  config.eval.plot_points = 200
  config.eval.plot_samples = 3
  return config
