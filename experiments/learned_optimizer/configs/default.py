"""The LSTM optimizer on 10-d quadratics (Andrychowicz et al., 2016, Sec. 3.1).

Two LSTM layers of 20 units shared across coordinates, the paper's gradient
preprocessing (p = 10) and 0.1 output scale (``jmeta.learned_optimizers.lstm_rule``).
Meta-trained, as in the paper, on unrolls of 100 steps with truncated backprop
through 20 steps at a time, the meta-loss the mean of f(theta_t) over the steps
(w_t = 1), with Adam (rate 3e-3, cosine-decayed to 3e-4). Deviations: exact second derivatives through the optimizee's
gradient (the paper drops them, d grad_t / d phi = 0; on a quadratic they are
cheap), meta-gradients clipped to global norm 1, 128 problems per meta-step, and a
meta-training length set by a CPU budget, not the paper's (which it does not
state). Baselines (SGD, momentum 0.9, NAG 0.9, RMSprop, Adam; optax) each get the
learning rate of a grid 1e-4..10 (4 per decade) with the lowest mean loss after 100
steps on 512 problems of the training distribution. The test: 1,000 held-out
problems (a disjoint key stream), mean loss after 100 steps with its 95% interval.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.task = 'quadratic'
  config.rule = 'lstm'
  config.dim = 10
  config.steps = 100
  config.estimator = 'truncated_backprop'
  config.truncation = 20
  config.num_tasks = 128
  config.first_order = False
  config.std = 0.01  # ES and PES only
  config.meta_learning_rate = 3e-3
  config.clip_norm = 1.0
  config.num_updates = 4_000
  config.log_every = 50
  config.checkpoint_every = 500

  config.tune = ml_collections.ConfigDict()
  config.tune.seed = 1_000_003  # key streams disjoint from training's
  config.tune.num_tasks = 512
  config.tune.learning_rates = tuple(10 ** (k / 4) for k in range(-16, 5))
  config.tune.baselines = ('sgd', 'momentum', 'nag', 'rmsprop', 'adam')

  config.eval = ml_collections.ConfigDict()
  config.eval.seed = 2_000_003
  config.eval.num_tasks = 1_000
  return config
