"""Meta Networks at 20-way 1-shot: the first 46 updates from seeds 0-3, with the
meta-gradient's global norm, to see which initialisations die (a gradient of
exactly zero: every ReLU dead, no biases, so no update can revive the network).

  PYTHONPATH=. python results/omniglot/full/meta_networks_20w1s/seed_check.py

The updates are the training run's: configs/meta_networks.py:20w1s, its sampler,
learner, optimiser and keys (experiments/omniglot/train.py), seed by seed.
"""

import jax
import jax.numpy as jnp

import jmeta
from experiments.omniglot import learners, train
from experiments.omniglot.configs import meta_networks
from jmeta.data import omniglot

for seed in range(4):
  config = meta_networks.get_config('20w1s')
  config.seed = seed
  bank = jnp.asarray(omniglot.load_split(config.data.protocol, 'train'))
  sampler = train.make_sampler(config, bank, train=True)
  learner = learners.make_learner(config)
  probe = sampler.sample(jax.random.key(0), 1)
  root = jax.random.key(config.seed)
  params = learner.init(jax.random.fold_in(root, 0), probe.support_inputs[0])
  trainer = jmeta.with_task_sampling(
    jmeta.make_meta_trainer(learner.estimator, train.outer_optimizer(config)),
    lambda key, bank, sampler=sampler, size=config.meta_batch_size: sampler.sample_from(
      bank, key, size
    ),
  )
  state = trainer.init(params)
  gradient = jax.jit(learner.estimator.meta_gradient)
  key = jax.random.fold_in(root, 1)
  for step in range(46):
    if step in (0, 10, 20, 30, 40, 45):
      batch = sampler.sample_from(
        bank, jax.random.fold_in(key, step), config.meta_batch_size
      )
      g = gradient(state.params, batch)
      norm = float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(g.grads))))
      print(
        f'seed {seed} update {step}: loss {float(g.metrics["loss"]):.6g}, '
        f'accuracy {float(g.metrics["accuracy"]):.3f}, gradient norm {norm:.6g}',
        flush=True,
      )
    state, _ = trainer.step(state, jax.random.fold_in(key, step), bank)
