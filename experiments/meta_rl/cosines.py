"""How the MAML-RL meta-gradient estimators compare, batch by batch.

  python -m experiments.meta_rl.cosines --out=results/meta_rl/cosines/init.json
  python -m experiments.meta_rl.cosines --workdir=RUN --out=.../trained.json

At the params of a run's latest checkpoint (``--workdir``: its ``config.json`` and
checkpoint) or of the default config's initial policy, every estimator of
``jmeta.rl.ESTIMATORS`` computes its meta-gradient on the same ``--batches``
meta-batches of the config's size: the same tasks and, since the sampling policy is
the same, the same episodes. Per estimator:

* ``cosine_to_own_mean``: each batch's estimate against the mean of the other
  batches' (its signal-to-noise ratio: 1 for a noiseless estimator);
* ``split_half_cosine``: between the means of the even and the odd batches, which
  says whether the mean over ``--batches`` has settled;
* ``cosine_to_dice_full_same_batch``: against ``'dice_full'`` on the same episodes,
  which isolates what the estimator changes from the sampling noise all share.
  ``'dice_full'`` is the unbiased one: its expectation is the gradient of the
  expected undiscounted return after adaptation (``tests/rl/test_exact_meta_gradient.py``);
* ``cosine_of_means``: between the estimators' means over all batches, the true
  meta-gradient being the limit of ``'dice_full'``'s mean (trustworthy only as far
  as its ``split_half_cosine`` is near 1).

Writes the JSON to ``--out`` and a bar plot beside it (``.png``), with the results
of ``--plot_with`` beside its own.
"""

from __future__ import annotations

import json
import pathlib

from absl import app, flags, logging


def define_flags() -> None:
  """Defined when the command runs, not on import (see ``omniglot.probe``)."""
  flags.DEFINE_string(
    'workdir', None, 'A trained MAML-RL workdir (default: the initial policy).'
  )
  flags.DEFINE_string('out', None, 'Where to write the JSON.', required=True)
  flags.DEFINE_integer('batches', 100, 'Meta-batches on which to compare.')
  flags.DEFINE_integer('seed', 2_000_003, 'Key of the compared meta-batches.')
  flags.DEFINE_list(
    'plot_with', [], "Earlier outputs of this command to draw beside this one's."
  )


def load(workdir: pathlib.Path | None, config=None):
  """``(config, params, step)``: a workdir's config and latest checkpoint, or
  (no workdir) the initial policy of ``config``, default the default config (step 0)."""
  import jax  # noqa: PLC0415
  import ml_collections  # noqa: PLC0415

  from experiments.common.checkpoint import Checkpointer  # noqa: PLC0415
  from experiments.meta_rl import train  # noqa: PLC0415
  from experiments.meta_rl.configs import default  # noqa: PLC0415

  if workdir is None:
    config = default.get_config() if config is None else config
  else:
    config = ml_collections.ConfigDict(
      json.loads((workdir / 'config.json').read_text())
    )
  train.check_config(config)
  env, policy = train.make_env(config), train.make_policy(config)
  params = policy.init(jax.random.fold_in(jax.random.key(config.seed), 0))
  if workdir is None:
    return config, params, 0
  checkpointer = Checkpointer(
    workdir, config.to_dict(), may_differ=train.MAY_DIFFER_ON_RESUME
  )
  step = checkpointer.latest_step()
  if step is None:
    raise app.UsageError(f'{workdir} has no checkpoint.')
  init_state, _ = train.make_outer_loop(
    config, env, policy, train.make_learner(config, env, policy)
  )
  params = checkpointer.restore(init_state(params), step).params
  checkpointer.close()
  return config, params, step


def cosine(a, b) -> float:
  import numpy as np  # noqa: PLC0415

  return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def summary(values) -> dict:
  import numpy as np  # noqa: PLC0415

  import jmeta  # noqa: PLC0415

  mean, ci = jmeta.mean_confidence_interval(np.asarray(values))
  return {'mean': float(mean), 'ci95': float(ci), 'values': [float(v) for v in values]}


def estimator_cosines(config, params, *, batches: int, seed: int) -> dict:
  """The cosines described in the module doc, per estimator."""
  import jax  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415
  from jax.flatten_util import ravel_pytree  # noqa: PLC0415

  from experiments.meta_rl import train  # noqa: PLC0415
  from jmeta import rl  # noqa: PLC0415

  if batches < 4:
    raise app.UsageError(
      f'--batches must be at least 4 (two halves of 2), got {batches}.'
    )
  env, policy = train.make_env(config), train.make_policy(config)

  def gradient_fn(estimator: str):
    setting = config.copy_and_resolve_references()
    setting.estimator = estimator
    learner = train.make_learner(setting, env, policy)

    @jax.jit
    def gradient(key):
      batch = rl.sample_task_batch(env, key, config.num_tasks)
      return ravel_pytree(learner.meta_gradient(params, batch).grads)[0]

    return lambda key: np.asarray(gradient(key), np.float64)

  keys = [jax.random.fold_in(jax.random.key(seed), i) for i in range(batches)]
  grads = {}
  for name in rl.ESTIMATORS:
    fn = gradient_fn(name)
    grads[name] = np.stack([fn(k) for k in keys])
    logging.info('%s: %d meta-gradients', name, batches)
  means = {name: g.mean(0) for name, g in grads.items()}
  out = {}
  for name, g in grads.items():
    total = g.sum(0)
    out[name] = {
      # Leave-one-out, so that a batch is not compared with itself.
      'cosine_to_own_mean': summary(
        [cosine(x, (total - x) / (batches - 1)) for x in g]
      ),
      'split_half_cosine': cosine(g[0::2].mean(0), g[1::2].mean(0)),
      'cosine_to_dice_full_same_batch': summary(
        [cosine(x, y) for x, y in zip(g, grads['dice_full'])]
      ),
      'norm_ratio_to_dice_full_same_batch': summary(
        [np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(g, grads['dice_full'])]
      ),
      'cosine_of_means': {other: cosine(means[name], m) for other, m in means.items()},
    }
  return {'estimators': out}


def plot(results: list[dict], path: pathlib.Path) -> None:
  """Bars of each estimator's per-batch cosines (95% intervals), one colour a
  params point."""
  import matplotlib  # noqa: PLC0415

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # noqa: PLC0415

  names = list(results[0]['estimators'])
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
  width = 0.8 / len(results)
  for ax, key, title in (
    (axes[0], 'cosine_to_own_mean', "one batch vs the estimator's mean over batches"),
    (axes[1], 'cosine_to_dice_full_same_batch', "vs exact 'dice_full', same batch"),
  ):
    for i, r in enumerate(results):
      rows = [r['estimators'][n][key] for n in names]
      ax.bar(
        [j + i * width for j in range(len(names))],
        [row['mean'] for row in rows],
        width,
        yerr=[row['ci95'] for row in rows],
        label=f'iteration {r["step"]}',
      )
    ax.set_xticks([j + width * (len(results) - 1) / 2 for j in range(len(names))])
    ax.set_xticklabels(names)
    ax.set_title(title, fontsize=9)
    ax.axhline(0, color='k', lw=0.5)
  axes[0].set_ylabel('cosine')
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from experiments.common.run_info import run_info  # noqa: PLC0415

  f = flags.FLAGS
  out = pathlib.Path(f.out)
  if out.exists():
    raise app.UsageError(f'{out} exists; move it away to measure again.')
  workdir = None if f.workdir is None else pathlib.Path(f.workdir)
  config, params, step = load(workdir)
  result = {
    'run': run_info(),
    'workdir': f.workdir,
    'step': step,
    'config': config.to_dict(),
    'batches': f.batches,
    'seed': f.seed,
    **estimator_cosines(
      config,
      params,
      batches=f.batches,
      seed=f.seed,
    ),
  }
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2))
  earlier = [json.loads(pathlib.Path(p).read_text()) for p in f.plot_with]
  plot([*earlier, result], out.with_suffix('.png'))
  logging.info('wrote %s', out)


if __name__ == '__main__':
  define_flags()
  app.run(main)
