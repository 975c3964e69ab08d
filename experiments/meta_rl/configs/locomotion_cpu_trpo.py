"""``locomotion_cpu.py``'s CPU budget with a TRPO outer step (max KL 0.01,
pytorch-maml-rl's trust region: ``trpo.py``) instead of Adam, and its first
settings (``locomotion_cpu.first_settings``).

Its jitted step on half-cheetah hung inside XLA:CPU until the linear baselines'
batched solves were made one task at a time (``jmeta.xla_workarounds``;
``results/meta_rl/locomotion/half_cheetah_direction_trpo_hang``).
"""

from experiments.meta_rl.configs import locomotion, locomotion_cpu


def get_config(family: str = 'half_cheetah_direction'):
  config = locomotion_cpu.first_settings(locomotion.get_config(family))
  return locomotion_cpu.cpu_budget(config)
