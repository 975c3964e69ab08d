"""Keyword options that several functions share, given once.

A group of options that many functions take with the same names, meanings and
defaults (e.g. a learner's inner loop, or how tasks are batched) is a ``TypedDict``;
each function takes it as ``**options: Unpack[ThatDict]`` and hands it on, and
``lists_options`` writes the options into the function's signature with their
defaults, which stay in one place: the function that finally consumes them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar('F', bound=Callable[..., Any])


def lists_options(options: type, *defaults: Callable[..., Any]) -> Callable[[F], F]:
  """Lists the keys of the ``TypedDict`` ``options`` in the signature of
  ``fn(..., **options)``: each as the parameter of the same name of the first of
  ``defaults`` that has one, with its annotation and default, keyword-only.

  ``help`` and ``inspect.signature`` (which the experiments read to hand a factory
  the config options it takes) then show each option with its default.
  """

  def decorate(fn: F) -> F:
    source = {}
    for function in reversed(defaults):
      source.update(inspect.signature(function).parameters)
    signature = inspect.signature(fn)
    own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    listed = [
      source[name].replace(kind=inspect.Parameter.KEYWORD_ONLY)
      for name in options.__annotations__
    ]
    fn.__signature__ = signature.replace(parameters=own + listed)
    return fn

  return decorate


def split_options(options: dict[str, Any], keys: type) -> tuple[dict, dict]:
  """``(those of options that are keys of the TypedDict keys, the others)``."""
  names = keys.__annotations__
  return (
    {k: v for k, v in options.items() if k in names},
    {k: v for k, v in options.items() if k not in names},
  )
