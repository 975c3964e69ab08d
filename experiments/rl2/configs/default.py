import ml_collections


def get_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    {
      'seed': 0,
      'num_arms': 5,
      'num_pulls': 10,
      'hidden_size': 128,
      # The value head on a GRU of its own, as the paper's baseline network. On the
      # policy's GRU the value's regression slows the policy's learning, more the
      # longer the trial (results/meta_rl/rl2_ablations/shared_value).
      'separate_value': True,
      'num_trials': 256,
      'learning_rate': 1e-3,
      'clip_norm': 0.5,
      'ppo': {
        'clip': 0.2,
        'value_coef': 0.5,
        'entropy_coef': 0.01,
        'epochs': 4,
        'minibatches': 4,
        'gamma': 0.99,
        'gae_lambda': 0.3,
        'normalize_advantages': True,
      },
      'num_iterations': 500,
      'log_every': 10,
      'checkpoint_every': 50,
      # A key stream disjoint from training's.
      'eval': {'seed': 1_000_003, 'num_tasks': 2000},
    }
  )
