"""``locomotion_cpu.py``'s CPU budget with the paper's outer step, TRPO (max KL
0.01, ``locomotion.py``'s settings), instead of Adam.

Its jitted step on half-cheetah hung inside XLA:CPU until the linear baselines'
batched solves were made one task at a time (``jmeta.xla_workarounds``;
``results/meta_rl/locomotion/half_cheetah_direction_trpo_hang``).
"""

from experiments.meta_rl.configs import locomotion, locomotion_cpu


def get_config(family: str = 'half_cheetah_direction'):
  return locomotion_cpu.cpu_budget(locomotion.get_config(family))
