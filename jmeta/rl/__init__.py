"""Meta-reinforcement learning: pure-JAX task families, policies and MAML-RL.

* Environments (``Environment``: ``sample_task``, ``reset``, ``step``, all pure):
  ``navigation_2d``, ``bernoulli_bandit``, ``tabular_mdp``; on brax (``pip install
  'jmeta[rl]'``), ``half_cheetah_direction``, ``half_cheetah_velocity``,
  ``ant_direction``.
* Rollouts: ``rollout`` (``lax.scan``), ``rollouts`` (vmapped over episodes).
* Policies over jmeta models: ``gaussian_mlp_policy``, ``categorical_policy``.
* Advantages: ``discounted_returns``, ``linear_baseline``, ``gae``, ``normalize``.
* Surrogates: ``naive_surrogate``, ``dice_surrogate``, ``lvc_surrogate``.
* MAML-RL: ``maml_rl`` (a ``jmeta.MetaLearner``), ``meta_surrogate``, its inner
  loop ``adaptation`` and the returns along it ``adaptation_returns``,
  ``maml_trpo_step`` (TRPO's outer step, ``trpo``).
* RL^2: ``gru_policy``, ``play_trial``/``play_trials``, ``rl2_ppo`` (PPO's losses in
  ``ppo``).
* Bandit baselines: ``random_policy``, ``ucb1``, ``thompson_sampling``,
  ``gittins_policy`` over ``gittins_index_table``, played by ``bandit_returns``.
"""

from jmeta.rl import bandit_baselines, gittins, ppo, rl2, trpo
from jmeta.rl.advantages import (
  AdvantageSettings,
  baseline_features,
  discounted_returns,
  estimate_advantages,
  gae,
  linear_baseline,
  normalize,
)
from jmeta.rl.bandit_baselines import (
  BanditCounts,
  BanditPolicy,
  bandit_returns,
  gittins_policy,
  play_bandit,
  random_policy,
  thompson_sampling,
  ucb1,
)
from jmeta.rl.bandits import BanditState, BanditTask, bernoulli_bandit
from jmeta.rl.environment import Environment, sample_tasks
from jmeta.rl.gittins import gittins_index_table
from jmeta.rl.locomotion import (
  LocomotionTask,
  ant_direction,
  half_cheetah_direction,
  half_cheetah_velocity,
)
from jmeta.rl.maml_rl import (
  ESTIMATORS,
  Adaptation,
  RLTaskBatch,
  adapt_on,
  adaptation,
  adaptation_returns,
  maml_rl,
  maml_trpo_step,
  meta_surrogate,
  policy_gradient_step,
  sample_adaptation,
  sample_task_batch,
)
from jmeta.rl.navigation import NavigationState, NavigationTask, navigation_2d
from jmeta.rl.objectives import (
  dice_surrogate,
  lvc_surrogate,
  magic_box,
  naive_surrogate,
)
from jmeta.rl.policies import Policy, categorical_policy, gaussian_mlp_policy
from jmeta.rl.ppo import PPOSettings
from jmeta.rl.rl2 import (
  RecurrentPolicy,
  RL2State,
  Trial,
  gru_policy,
  play_trial,
  play_trials,
  rl2_ppo,
)
from jmeta.rl.rollout import Trajectory, episode_returns, rollout, rollouts
from jmeta.rl.tabular_mdp import TabularMDPState, TabularMDPTask, tabular_mdp

__all__ = [
  'AdvantageSettings',
  'BanditState',
  'BanditTask',
  'ESTIMATORS',
  'Environment',
  'NavigationState',
  'LocomotionTask',
  'NavigationTask',
  'Policy',
  'RLTaskBatch',
  'TabularMDPState',
  'TabularMDPTask',
  'Trajectory',
  'Adaptation',
  'adapt_on',
  'adaptation',
  'adaptation_returns',
  'estimate_advantages',
  'baseline_features',
  'bernoulli_bandit',
  'categorical_policy',
  'dice_surrogate',
  'discounted_returns',
  'episode_returns',
  'gae',
  'gaussian_mlp_policy',
  'linear_baseline',
  'lvc_surrogate',
  'magic_box',
  'maml_rl',
  'maml_trpo_step',
  'meta_surrogate',
  'naive_surrogate',
  'navigation_2d',
  'half_cheetah_direction',
  'half_cheetah_velocity',
  'ant_direction',
  'normalize',
  'policy_gradient_step',
  'rollout',
  'rollouts',
  'sample_adaptation',
  'sample_task_batch',
  'sample_tasks',
  'tabular_mdp',
  'trpo',
  'bandit_baselines',
  'bandit_returns',
  'BanditCounts',
  'BanditPolicy',
  'gittins',
  'gittins_index_table',
  'gittins_policy',
  'gru_policy',
  'play_bandit',
  'play_trial',
  'play_trials',
  'ppo',
  'PPOSettings',
  'random_policy',
  'RecurrentPolicy',
  'rl2',
  'rl2_ppo',
  'RL2State',
  'thompson_sampling',
  'Trial',
  'ucb1',
]
