"""Meta-reinforcement learning: pure-JAX task families, policies and MAML-RL.

* Environments (``Environment``: ``sample_task``, ``reset``, ``step``, all pure):
  ``navigation_2d``, ``bernoulli_bandit``, ``tabular_mdp``.
* Rollouts: ``rollout`` (``lax.scan``), ``rollouts`` (vmapped over episodes).
* Policies over jmeta models: ``gaussian_mlp_policy``, ``categorical_policy``.
* Advantages: ``discounted_returns``, ``linear_baseline``, ``gae``, ``normalize``.
* Surrogates: ``naive_surrogate``, ``dice_surrogate``, ``lvc_surrogate``.
* MAML-RL: ``maml_rl`` (a ``jmeta.MetaLearner``), ``meta_surrogate``,
  ``adaptation_returns``, ``maml_trpo_step`` (TRPO's outer step, ``trpo``).
"""

from jmeta.rl import trpo
from jmeta.rl.advantages import (
  AdvantageSettings,
  baseline_features,
  discounted_returns,
  estimate_advantages,
  gae,
  linear_baseline,
  normalize,
)
from jmeta.rl.bandits import BanditState, BanditTask, bernoulli_bandit
from jmeta.rl.environment import Environment, sample_tasks
from jmeta.rl.maml_rl import (
  ESTIMATORS,
  RLTaskBatch,
  adapt_on,
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
from jmeta.rl.rollout import Trajectory, episode_returns, rollout, rollouts
from jmeta.rl.tabular_mdp import TabularMDPState, TabularMDPTask, tabular_mdp

__all__ = [
  'AdvantageSettings',
  'BanditState',
  'BanditTask',
  'ESTIMATORS',
  'Environment',
  'NavigationState',
  'NavigationTask',
  'Policy',
  'RLTaskBatch',
  'TabularMDPState',
  'TabularMDPTask',
  'Trajectory',
  'adapt_on',
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
  'normalize',
  'policy_gradient_step',
  'rollout',
  'rollouts',
  'sample_adaptation',
  'sample_task_batch',
  'sample_tasks',
  'tabular_mdp',
  'trpo',
]
