"""The meta-LSTM learner on Omniglot (Ravi & Larochelle, 2017).

The paper reports Mini-ImageNet only (5-way: 43.44% 1-shot, 60.60% 5-shot); this is
its algorithm on jmeta's Omniglot episodes. From the reference code
(twitter/meta-learning-lstm): a 20-unit first LSTM, a learner of 32 filters per
layer, the paper's first-order estimator, outer Adam at 1e-3, the same number of
full-batch inner steps at test as in training. The CPU-budget defaults differ from
the reference, which runs 12 inner steps (1-shot; 25 at 5-shot), one episode per
meta-step, 75,000 episodes, and clips the meta-gradient's norm at 0.25:

* 5 inner steps and 8 episodes per meta-step;
* the input gate's initial bias in U(-1, 0) (an inner rate of 0.27 to 0.5) instead
  of U(-5, -4) (about 0.01), so that a few hundred meta-steps see the inner loop
  move;
* no meta-gradient clipping (the experiment's outer optimizer is plain Adam).

Usage: ``--config=experiments/omniglot/configs/meta_lstm.py:5w1s``.
"""

from experiments.omniglot.configs import maml


def get_config(setting: str = '5w1s'):
  config = maml.get_config(setting)
  config.algorithm = 'meta_lstm'
  config.model.filters = 32
  config.meta_batch_size = 8
  config.inner_steps = 5
  config.eval.inner_steps = 5
  # The meta-LSTM is the inner rule: no learning rate or optimizer of its own.
  config.inner_learning_rate = None
  config.meta_lstm = dict(
    hidden_size=20,
    first_order=True,
    seed=0,
    forget_bias=(4.0, 5.0),
    input_bias=(-1.0, 0.0),
  )
  return config
