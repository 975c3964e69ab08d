"""RL^2 on Bernoulli bandits with k = 5 arms and n = 10 pulls per trial.

Each pull is one episode (horizon 1), so a trial is n episodes of one task, as in
Table 1 of Duan et al. (2016); arm means are drawn from Uniform[0, 1]. The paper
trains a GRU policy with a first-order TRPO and a GRU baseline; its appendix
(hyper-parameters) was not in the text of the paper found, so the sizes here are
this project's CPU-budget choices, not the paper's: a GRU of 128 units with
policy and value heads, PPO (clip 0.2, 4 epochs of 4 minibatches of trials, value
weight 0.5, entropy weight 0.01), GAE with discount 0.99 and lambda 0.3 (the values
of edlanglois/relearn's RL^2 bandit replication), Adam at 1e-3 with the global
gradient norm clipped at 0.5, 256 trials per iteration.
Evaluation: 2,000 held-out bandits from a fixed seed (the tasks the baselines
script evaluates on), one trial each, actions sampled from the policy.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_arms = 5
  config.num_pulls = 10
  config.hidden_size = 128
  config.num_trials = 256
  config.learning_rate = 1e-3
  config.clip_norm = 0.5
  config.ppo = ml_collections.ConfigDict(
    {
      'clip': 0.2,
      'value_coef': 0.5,
      'entropy_coef': 0.01,
      'epochs': 4,
      'minibatches': 4,
      'gamma': 0.99,
      'gae_lambda': 0.3,
      'normalize_advantages': True,
    }
  )
  config.num_iterations = 500
  config.log_every = 10
  config.checkpoint_every = 50

  config.eval = ml_collections.ConfigDict()
  config.eval.seed = 1_000_003  # a key stream disjoint from training's
  config.eval.num_tasks = 2000
  return config
