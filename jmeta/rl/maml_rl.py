"""MAML-RL (Finn et al., 2017) as a ``jmeta.MetaLearner``, with five meta-gradients.

The inner loop is ``inner_steps`` REINFORCE steps, ``theta_{k+1} = theta_k + alpha
grad_theta L_in(theta_k)``, each on ``num_episodes`` fresh episodes sampled with
``theta_k`` (advantages: GAE over the linear feature baseline, normalised, as
pytorch-maml-rl). The outer objective is the return of ``num_episodes`` episodes
sampled with the adapted params. The estimators differ only in what the derivative
of that sampled computation means:

* ``'dice'``: the inner surrogate is DiCE (``jmeta.rl.objectives``), so the
  derivative of the inner step carries an unbiased estimate of the Hessian of the
  expected return, ``grad^2 J = E[sum grad^2 log pi R + grad log p grad log p^T R]``
  (ProMP's "formulation II", the second-order MAML-RL meant by Finn et al. and by
  Foerster et al.'s DiCE). The outer episodes' dependence on the adapted params
  enters through the outer surrogate's score function.
* ``'dice_full'``: DiCE over the whole stochastic graph, the inner episodes
  included: ``box(sum log p(tau_in; theta_k))`` multiplies the outer objective, and
  the inner step is a plain function of its samples (naive surrogate). Its
  expectation is exactly the gradient of the expected post-adaptation return
  ``E_{tau_in ~ pi_theta}[J(theta'(tau_in))]`` (ProMP's "formulation I", E-MAML),
  as ``tests/rl/test_exact_meta_gradient.py`` checks by enumeration. Exact only
  with undiscounted, un-normalised outer advantages and no fitted outer baseline
  (a fitted baseline depends on the episode's own actions); high variance.
* ``'naive'``: the inner surrogate ``mean log pi A`` differentiated twice: it
  misses the score-product terms of the Hessian (the error DiCE and ProMP point
  out).
* ``'lvc'``: ProMP's low-variance curvature surrogate in the inner step.
* ``'first_order'``: the inner gradient is a constant; the meta-gradient is the
  policy gradient at the adapted params.

Every estimator takes the same inner step in value; only their derivatives differ.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict

import jax
import jax.numpy as jnp

from jmeta.learner import MetaGradient, MetaLearner, identity
from jmeta.options import lists_options, split_options
from jmeta.rl.advantages import (
  AdvantageSettings,
  check_advantage_settings,
  estimate_advantages,
)
from jmeta.rl.environment import Environment, check_horizon, sample_tasks
from jmeta.rl.objectives import SURROGATES, dice_surrogate, magic_box
from jmeta.rl.policies import Policy
from jmeta.rl.rollout import Trajectory, episode_returns, rollouts
from jmeta.rl.trpo import TRPOOptions, trpo_step
from jmeta.validation import (
  check_choice,
  check_positive_int,
  check_positive_real,
  check_steps,
)

if TYPE_CHECKING:
  from typing_extensions import Unpack

ESTIMATORS = ('dice', 'dice_full', 'naive', 'lvc', 'first_order')
# The surrogate each estimator differentiates in the inner step.
INNER_SURROGATES = {
  'dice': 'dice',
  'dice_full': 'naive',
  'naive': 'naive',
  'lvc': 'lvc',
  'first_order': 'naive',
}
# The inner loop through which maml_trpo_step's KL is differentiated, for each
# estimator: the same steps, with the sampled (not the score-function) derivatives.
METRIC_ESTIMATORS = {
  'dice': 'naive',
  'naive': 'naive',
  'lvc': 'naive',
  'first_order': 'first_order',
}


# pytorch-maml-rl's: discount 0.99, GAE lambda 1, linear baseline, normalised.
DEFAULT_SETTINGS = AdvantageSettings()


class RLTaskBatch(NamedTuple):
  """A meta-batch: stacked tasks (leading task axis) and one PRNG key per task."""

  tasks: Any
  keys: jax.Array


def sample_task_batch(env: Environment, key: jax.Array, num_tasks: int) -> RLTaskBatch:
  """``num_tasks`` tasks of ``env`` and their sampling keys, from one key."""
  task_key, episode_key = jax.random.split(key)
  tasks = sample_tasks(env, task_key, num_tasks)
  return RLTaskBatch(tasks, jax.random.split(episode_key, num_tasks))


def check_estimator(estimator: str) -> str:
  return check_choice(estimator, ESTIMATORS, 'estimator')


def policy_gradient_step(
  policy: Policy,
  params: Any,
  trajectories: Trajectory,
  advantages: jax.Array,
  learning_rate: float,
  surrogate: str = 'naive',
) -> Any:
  """One REINFORCE ascent step ``params + lr * grad surrogate(params)`` on the
  ``(episodes, T)`` trajectories of one task; differentiable in ``params``."""

  def objective(p):
    log_probs = policy.log_prob(p, trajectories.observations, trajectories.actions)
    return SURROGATES[surrogate](log_probs, advantages, trajectories.valid)

  grads = jax.grad(objective)(params)
  return jax.tree.map(lambda p, g: p + learning_rate * g, params, grads)


def sample_adaptation(
  env: Environment,
  policy: Policy,
  params: Any,
  task: Any,
  key: jax.Array,
  *,
  inner_steps: int,
  num_episodes: int,
  learning_rate: float,
  settings: AdvantageSettings = DEFAULT_SETTINGS,
  horizon: int | None = None,
) -> tuple[Trajectory, Trajectory, Any]:
  """Samples an adaptation (no gradient): ``(inner, outer, adapted_params)``.

  ``inner`` holds the episodes of each inner step stacked on a leading step axis
  (``(inner_steps, episodes, T, ...)``; ``None`` if ``inner_steps == 0``), each
  sampled with the params of that step; ``outer`` is sampled with the adapted
  params. ``meta_surrogate`` recomputes the same steps differentiably.
  """
  params = jax.lax.stop_gradient(params)
  batches = []
  for k in range(inner_steps):
    batch = rollouts(
      env, policy, params, task, jax.random.fold_in(key, k), num_episodes, horizon
    )
    batches.append(batch)
    params = policy_gradient_step(
      policy, params, batch, estimate_advantages(batch, settings), learning_rate
    )
  outer = rollouts(
    env,
    policy,
    params,
    task,
    jax.random.fold_in(key, inner_steps),
    num_episodes,
    horizon,
  )
  inner = jax.tree.map(lambda *xs: jnp.stack(xs), *batches) if batches else None
  return inner, outer, jax.lax.stop_gradient(params)


def adapt_on(
  estimator: str,
  policy: Policy,
  params: Any,
  inner: Trajectory | None,
  *,
  learning_rate: float,
  settings: AdvantageSettings = DEFAULT_SETTINGS,
) -> tuple[Any, jax.Array]:
  """The inner steps on the sampled ``inner`` episodes, differentiable in
  ``params`` as ``estimator`` differentiates them: ``(adapted params, score)``,
  ``score`` the summed log-probability of the inner episodes under the params that
  sampled them (used by ``'dice_full'``; zero otherwise)."""
  steps = 0 if inner is None else inner.rewards.shape[0]
  score = jnp.zeros((), jnp.result_type(float))
  adapted = params
  for k in range(steps):
    batch = jax.tree.map(operator.itemgetter(k), inner)
    if estimator == 'dice_full':
      log_probs = policy.log_prob(adapted, batch.observations, batch.actions)
      score = score + jnp.sum(log_probs * batch.valid)
    stepped = policy_gradient_step(
      policy,
      adapted,
      batch,
      estimate_advantages(batch, settings),
      learning_rate,
      INNER_SURROGATES[estimator],
    )
    if estimator == 'first_order':
      stepped = jax.tree.map(
        lambda p, s: p + jax.lax.stop_gradient(s - p), adapted, stepped
      )
    adapted = stepped
  return adapted, score


def meta_surrogate(
  estimator: str,
  policy: Policy,
  params: Any,
  inner: Trajectory | None,
  outer: Trajectory,
  *,
  learning_rate: float,
  settings: AdvantageSettings = DEFAULT_SETTINGS,
  outer_settings: AdvantageSettings | None = None,
) -> jax.Array:
  """The scalar whose gradient in ``params`` is ``estimator``'s meta-gradient
  (ascent direction) on these sampled episodes; see the module doc.

  ``inner``: the episodes of each inner step, ``(inner_steps, episodes, T, ...)``
  (or None for no inner step); ``outer``: ``(episodes, T, ...)``.
  """
  check_estimator(estimator)
  outer_settings = settings if outer_settings is None else outer_settings
  adapted, score = adapt_on(
    estimator, policy, params, inner, learning_rate=learning_rate, settings=settings
  )
  log_probs = policy.log_prob(adapted, outer.observations, outer.actions)
  objective = dice_surrogate(
    log_probs, estimate_advantages(outer, outer_settings), outer.valid
  )
  if estimator == 'dice_full':
    # The same normalisation as the surrogates: the mean over every step.
    value = jnp.mean(outer.rewards * outer.valid)
    objective = objective + (magic_box(score) - 1.0) * jax.lax.stop_gradient(value)
  return objective


def check_dice_full_settings(settings: AdvantageSettings) -> None:
  if settings.normalize or settings.gamma != 1.0 or settings.baseline != 'none':
    raise ValueError(
      "estimator='dice_full' is exact only with outer advantages that are the "
      'undiscounted returns-to-go: pass outer_settings=AdvantageSettings(gamma=1.0, '
      f"baseline='none', normalize=False); got {settings}."
    )


class AdaptationOptions(TypedDict, total=False):
  """MAML-RL's inner loop and meta-gradient estimator, the options that
  ``maml_rl`` and ``maml_trpo_step`` share; ``adaptation`` has their defaults."""

  estimator: str
  inner_learning_rate: float
  inner_steps: int
  num_episodes: int
  settings: AdvantageSettings
  horizon: int | None


class Adaptation(NamedTuple):
  """A checked MAML-RL inner loop (``adaptation``).

  ``sample(params, task, key) -> (inner, outer, adapted)`` samples it
  (``sample_adaptation``); ``adapt(params, inner) -> (adapted, score)`` recomputes
  its steps on the sampled ``inner`` episodes, differentiably as ``estimator``
  prescribes (``adapt_on``).
  """

  estimator: str
  learning_rate: float
  settings: AdvantageSettings
  sample: Callable[..., tuple[Trajectory, Trajectory, Any]]
  adapt: Callable[[Any, Trajectory | None], tuple[Any, jax.Array]]


def adaptation(
  env: Environment,
  policy: Policy,
  *,
  estimator: str = 'dice',
  inner_learning_rate: float = 0.1,
  inner_steps: int = 1,
  num_episodes: int = 20,
  settings: AdvantageSettings = DEFAULT_SETTINGS,
  horizon: int | None = None,
) -> Adaptation:
  """``inner_steps`` REINFORCE steps at ``inner_learning_rate``, each on
  ``num_episodes`` fresh episodes of ``horizon`` steps (default ``env.horizon``),
  advantages by ``settings``, differentiated as ``estimator`` prescribes; raises
  ``ValueError`` for a bad option."""
  check_estimator(estimator)
  learning_rate = check_positive_real(inner_learning_rate, 'inner_learning_rate')
  inner_steps = check_steps(inner_steps, 'inner_steps')
  num_episodes = check_positive_int(num_episodes, 'num_episodes')
  horizon = check_horizon(env.horizon if horizon is None else horizon)
  check_advantage_settings(settings)

  def sample(params, task, key):
    return sample_adaptation(
      env,
      policy,
      params,
      task,
      key,
      inner_steps=inner_steps,
      num_episodes=num_episodes,
      learning_rate=learning_rate,
      settings=settings,
      horizon=horizon,
    )

  def adapt(params, inner):
    return adapt_on(
      estimator, policy, params, inner, learning_rate=learning_rate, settings=settings
    )

  return Adaptation(estimator, learning_rate, settings, sample, adapt)


@lists_options(AdaptationOptions, adaptation)
def maml_rl(
  env: Environment,
  policy: Policy,
  *,
  outer_settings: AdvantageSettings | None = None,
  **options: Unpack[AdaptationOptions],
) -> MetaLearner:
  """MAML-RL on ``env`` with ``policy``: a ``MetaLearner`` over ``RLTaskBatch``es.

  Finn et al. (2017), 2D navigation: 20 tasks per meta-batch
  (``sample_task_batch``), 20 episodes of 100 steps per task and per step, one
  inner step at ``inner_learning_rate=0.1``. ``meta_gradient(params, batch)``
  returns the descent direction (minus the estimator's ascent direction) and the
  metrics ``loss`` (minus the mean return after adaptation), ``return_before``
  and ``return_after``. ``predict(params, task, key)`` returns the adapted
  params. ``jmeta.make_meta_trainer(learner, optax.adam(...))`` trains it.

  Example::

    env = jmeta.rl.navigation_2d()
    policy = jmeta.rl.gaussian_mlp_policy(2, 2)
    learner = jmeta.rl.maml_rl(env, policy)
    trainer = jmeta.outer_loop.with_task_sampling(
        jmeta.make_meta_trainer(learner, optax.adam(1e-3)),
        lambda key: jmeta.rl.sample_task_batch(env, key, 20))
    state = trainer.init(policy.init(jax.random.key(0)))
    state, metrics = trainer.step(state, jax.random.key(1))
  """
  loop = adaptation(env, policy, **options)
  estimator, settings = loop.estimator, loop.settings
  outer_settings = settings if outer_settings is None else outer_settings
  check_advantage_settings(outer_settings)
  if estimator == 'dice_full':
    check_dice_full_settings(outer_settings)

  def task_gradient(params, task_and_key, step=None) -> MetaGradient:
    del step
    task, key = task_and_key
    inner, outer, _ = loop.sample(params, task, key)
    grads = jax.grad(
      lambda p: (
        -meta_surrogate(
          estimator,
          policy,
          p,
          inner,
          outer,
          learning_rate=loop.learning_rate,
          settings=settings,
          outer_settings=outer_settings,
        )
      )
    )(params)
    after = jnp.mean(episode_returns(outer))
    before = after if inner is None else jnp.mean(episode_returns(inner)[0])
    metrics = {'loss': -after, 'return_before': before, 'return_after': after}
    return MetaGradient(grads, metrics)

  def meta_gradient(params, batch: RLTaskBatch, step=None) -> MetaGradient:
    if not isinstance(batch, RLTaskBatch):
      raise ValueError(
        'maml_rl.meta_gradient takes a jmeta.rl.RLTaskBatch (from '
        f'jmeta.rl.sample_task_batch), got {type(batch).__name__}.'
      )
    out = jax.vmap(lambda t, k: task_gradient(params, (t, k), step))(
      batch.tasks, batch.keys
    )
    return jax.tree.map(lambda x: jnp.mean(x, axis=0), out)

  def predict(params, task, key):
    return loop.sample(params, task, key)[2]

  return MetaLearner(
    name=f'maml_rl_{estimator}',
    init=identity,
    meta_gradient=meta_gradient,
    predict=predict,
    task_gradient=task_gradient,
    init_gradient=identity,
  )


def adaptation_returns(
  loop: Adaptation, params: Any, task: Any, key: jax.Array
) -> jax.Array:
  """Mean episode return after 0, 1, ..., ``inner_steps`` policy-gradient steps of
  ``loop`` (``adaptation``) on one task, each on ``num_episodes`` fresh episodes:
  shape ``(inner_steps + 1,)``."""
  inner, outer, _ = loop.sample(params, task, key)
  after = jnp.mean(episode_returns(outer))[None]
  if inner is None:
    return after
  return jnp.concatenate([jnp.mean(episode_returns(inner), axis=-1), after])


class MAMLTRPOOptions(AdaptationOptions, TRPOOptions, total=False):
  """``maml_trpo_step``'s options: its inner loop's and its TRPO step's."""


@lists_options(MAMLTRPOOptions, adaptation, trpo_step)
def maml_trpo_step(
  env: Environment, policy: Policy, **options: Unpack[MAMLTRPOOptions]
) -> Any:
  """MAML-RL's outer step as in Finn et al. (2017): TRPO on the adapted policies.

  Returns ``step(params, batch: RLTaskBatch) -> (params, metrics)``. It samples
  each task's adaptation with ``params``, then maximises the mean over tasks of the
  importance-weighted surrogate ``mean (pi_{theta'}/pi_{theta'_old})(a | o) A`` on
  the outer episodes, with ``theta' = adapt(theta)`` recomputed differentiably as
  ``estimator`` prescribes, subject to the mean KL between the old and new adapted
  policies on the outer observations being at most ``max_kl``
  (``jmeta.rl.trpo.trpo_step``, which takes the TRPO options: CG on the KL's
  Hessian-vector products, which go through the inner step, then a line search).
  The KL is differentiated through the inner step with its sampled derivatives (the
  naive surrogate's; ``'first_order'``: none), so its curvature is that of the KL
  the line search bounds. With ``inner_steps=0`` it is plain TRPO on the tasks.
  The defaults are pytorch-maml-rl's (``max_kl`` 0.01, damping 0.01, 10 CG
  iterations, 15 halvings). ``policy.kl`` must be set (both built-in policies set
  it); ``'dice_full'`` is refused (its score term is not an importance-weighted
  surrogate).
  """
  trpo_options, adaptation_options = split_options(options, TRPOOptions)
  loop = adaptation(env, policy, **adaptation_options)
  if loop.estimator == 'dice_full':
    raise ValueError(
      "maml_trpo_step takes estimator 'dice', 'naive', 'lvc' or 'first_order'; "
      "'dice_full' has no importance-weighted form."
    )
  if policy.kl is None:
    raise ValueError('maml_trpo_step needs a policy with a closed-form kl.')
  # The trust region bounds the KL of the policies adapted on these samples, so its
  # curvature is that function's own. DiCE's and LVC's inner surrogates carry
  # score-function terms into second derivatives, which the sampled KL lacks (on
  # half-cheetah, 40x its curvature: every step far inside the bound); the naive
  # surrogate has the same inner step and the sampled derivatives.
  metric_loop = adaptation(
    env,
    policy,
    **{**adaptation_options, 'estimator': METRIC_ESTIMATORS[loop.estimator]},
  )

  def step(params, batch: RLTaskBatch):
    inner, outer, adapted_old = jax.vmap(
      lambda task, key: loop.sample(params, task, key)
    )(batch.tasks, batch.keys)
    advantages = jax.vmap(lambda o: estimate_advantages(o, loop.settings))(outer)
    old_log_probs = jax.vmap(policy.log_prob)(
      adapted_old, outer.observations, outer.actions
    )

    def adapted(p, through=loop):
      # axis_size: with no inner steps, ``inner`` is None and each task's policy p.
      return jax.vmap(lambda i: through.adapt(p, i)[0], axis_size=batch.keys.shape[0])(
        inner
      )

    def surrogate(p):
      log_probs = jax.vmap(policy.log_prob)(
        adapted(p), outer.observations, outer.actions
      )
      ratio = jnp.exp(log_probs - old_log_probs)
      return jnp.mean(ratio * advantages * outer.valid)

    def kl(p):
      new = adapted(p, metric_loop)
      per_step = jax.vmap(policy.kl)(adapted_old, new, outer.observations)
      return jnp.sum(per_step * outer.valid) / jnp.maximum(jnp.sum(outer.valid), 1.0)

    new, info = trpo_step(surrogate, kl, params, **trpo_options)
    after = jnp.mean(episode_returns(outer))
    before = after if inner is None else jnp.mean(episode_returns(inner)[:, 0])
    return new, {**info, 'return_before': before, 'return_after': after}

  return step
