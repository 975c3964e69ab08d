"""Meta-training speed of the learned optimizers on quadratics, and where it goes.

For each rule (the LSTM of Andrychowicz et al. and the per-parameter MLP) times the
jitted meta-step of ``jmeta.learned_optimizers.meta_train_step`` with truncated
backprop (``--tasks`` 10-d quadratics, ``--truncation`` inner steps per meta-step,
exact second derivatives), and the same meta-step with the rule swapped for a
one-number rule (u = -exp(a) g): the inner problem's share of a meta-step is
that step's time over the rule's (the unroll, the optimizee's gradients and their
derivatives, and the scan around them); the rest is the rule's.

  python benchmarks/learned_optimizers.py --repeats 20

Writes ``<backend>_learned_optimizers.json`` and ``.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import types

import harness


def scalar_rule():
  import jax.numpy as jnp

  from jmeta import learned_optimizers as lopt

  def meta_init(key):
    del key
    return {'a': jnp.log(jnp.full((), 0.01))}

  def init(meta, params):
    del meta, params
    return ()

  def update(meta, grads, state, params):
    del params
    return -jnp.exp(meta['a']) * grads, state

  return lopt.LearnedRule('scalar_rate', meta_init, init, update)


def time_rule(rule, args) -> dict:
  import jax
  import optax

  from jmeta import learned_optimizers as lopt

  family = lopt.quadratics(args.dim)
  est = lopt.truncated_backprop(
    rule,
    family,
    steps=args.truncation * 5,
    truncation=args.truncation,
    num_tasks=args.tasks,
  )
  opt = optax.adam(1e-3)
  state = lopt.init_meta_train_state(
    est, opt, rule.meta_init(jax.random.key(0)), jax.random.key(1)
  )

  trainer = types.SimpleNamespace(step=jax.jit(lopt.meta_train_step(est, opt)))
  key = jax.random.key(2)
  timing, _, _ = harness.time_step(trainer, state, key, args.repeats)
  return timing


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--repeats', type=int, default=20)
  parser.add_argument('--tasks', type=int, default=128)
  parser.add_argument('--truncation', type=int, default=20)
  parser.add_argument('--dim', type=int, default=10)
  parser.add_argument('--out', default=harness.RESULTS)
  args = parser.parse_args()
  import jax

  from jmeta import learned_optimizers as lopt

  baseline = time_rule(scalar_rule(), args)
  rows = []
  for name, rule in (('lstm', lopt.lstm_rule()), ('mlp', lopt.mlp_rule())):
    timing = time_rule(rule, args)
    inner_share = baseline['step_s'] / timing['step_s']
    rows.append(
      {
        'rule': name,
        'meta_params': sum(
          int(x.size) for x in jax.tree.leaves(rule.meta_init(jax.random.key(0)))
        ),
        **timing,
        'meta_steps_per_s': 1 / timing['step_s'],
        'inner_steps_per_s': args.tasks * args.truncation / timing['step_s'],
        'inner_problem_share': inner_share,
      }
    )
  report = {
    **harness.run_stamp(__file__),
    'hardware': harness.hardware(),
    'settings': vars(args),
    'scalar_rule': baseline,
    'rules': rows,
  }
  lines = [
    f'Meta-step of truncated backprop: {args.tasks} {args.dim}-d quadratics x '
    f'{args.truncation} inner steps, median of {args.repeats} '
    f'(`{report["command"]}`, {report["date"]}, '
    f'{report["hardware"]["cpu_model"]}, {report["hardware"]["cpu_count"]} cores; '
    'measured on a shared CPU).',
    '',
    '| rule | meta-params | meta-steps/s | inner steps/s (all tasks) | compile (s) '
    '| inner problem share | rule share |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ]
  for r in rows:
    lines.append(
      f'| {r["rule"]} | {r["meta_params"]:,} | {r["meta_steps_per_s"]:.2f} | '
      f'{r["inner_steps_per_s"]:,.0f} | {r["compile_s"]:.1f} | '
      f'{r["inner_problem_share"]:.0%} | {1 - r["inner_problem_share"]:.0%} |'
    )
  lines.append('')
  lines.append(
    f'Inner problem share: the same meta-step with a one-number rule '
    f'(u = -exp(a) g) takes {baseline["step_s"] * 1e3:.1f} ms.'
  )
  backend = jax.default_backend()
  harness.save_report(
    args.out, f'{backend}_learned_optimizers', report, '\n'.join(lines) + '\n'
  )


if __name__ == '__main__':
  main()
