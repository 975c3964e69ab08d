"""Prototypical networks on Omniglot at the reference code's protocol.

jakesnell/prototypical-networks (Snell et al., 2017) trains twice, and so does this
config (``protonet.py``'s episodes, network and optimizer otherwise):

1. ``--config=experiments/omniglot/configs/protonet_full.py:5w1s`` (or ``5w5s``)
   trains on the 1,028 training characters and validates every 100 episodes (the
   reference's epoch) on 100 fresh 5-way episodes of the 172 validation characters,
   15 queries per class. It stops once 200 epochs in a row (plus one) have not
   lowered the validation loss (``early_stopping_patience``).
2. The same config with ``--config.data.train_split=trainval
   --config.early_stopping_patience=0 --config.num_iterations=N``, where N is the
   first run's ``early_stopping.reference_trainval_iterations`` (its best epoch,
   counted from 0, plus the patience, in episodes), trains anew on all 1,200
   characters. Its final iterate is the reported model: tested on 1,000 episodes
   of 5 and of 20 ways, the training shot, 15 queries per class, as the
   reference's ``run_eval.py`` does.

Deviations: the first run stops at 40,000 episodes at the latest (the reference
allows 10,000 epochs; by then the step size is 1e-3 / 2^20); the reference's
PyTorch ``StepLR``, stepped at the start of each epoch, first halves the rate after
19 epochs rather than 20.
"""

from experiments.omniglot.configs import protonet


def get_config(setting: str = '5w1s'):
  config = protonet.get_config(setting)
  config.data.q_query = 15  # validation and test queries per class
  config.eval_every = 100
  config.eval.val_episodes = 100
  config.eval.val_resample = True
  config.early_stopping_patience = 200
  config.num_iterations = 40_000
  config.eval.test_episodes = (1000,)
  return config
