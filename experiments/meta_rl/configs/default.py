"""MAML-RL on 2D navigation (Finn et al., 2017, Sec. 5.3 and Appendix A.2).

The paper's sizes: 20 tasks (goals) per meta-batch, 20 episodes of 100 steps per
task and per step, one policy-gradient inner step at 0.1, a policy of two hidden
layers of 100 ReLU units. Inner advantages as pytorch-maml-rl: discount 0.99, GAE
lambda 1 over the linear feature baseline, normalised. The paper's outer optimiser
is TRPO (configs/trpo.py); this config uses Adam at 3e-3 (the rate is a guess,
not tuned).
Estimator: 'dice' (second order through a DiCE inner step; see jmeta.rl.maml_rl).
Evaluation: 40 held-out goals from a fixed seed, 20 episodes per step, returns
after 0, 1, 2 and 3 inner steps, for the meta-trained policy and for a randomly
initialised one adapted the same way, and the return of a goal-seeing controller
(a = clip(goal - position, +-0.1)).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  # The task family (experiments.meta_rl.train.ENVIRONMENTS) and its horizon.
  config.env = ml_collections.ConfigDict({'name': 'navigation_2d', 'horizon': 100})
  config.policy = ml_collections.ConfigDict(
    {'hidden_sizes': (100, 100), 'init_log_std': 0.0}
  )
  config.estimator = 'dice'
  config.num_tasks = 20
  config.num_episodes = 20
  config.inner_steps = 1
  config.inner_learning_rate = 0.1
  config.advantages = ml_collections.ConfigDict(
    {'gamma': 0.99, 'gae_lambda': 1.0, 'baseline': 'linear', 'normalize': True}
  )
  config.outer = 'adam'  # or 'trpo' (configs/trpo.py)
  config.learning_rate = 3e-3  # Adam
  config.num_iterations = 500
  config.log_every = 10
  config.checkpoint_every = 50

  config.eval = ml_collections.ConfigDict()
  config.eval.seed = 1_000_003  # a key stream disjoint from training's
  config.eval.num_tasks = 40
  config.eval.num_episodes = 20
  config.eval.steps = 3
  return config
