"""Plugins found by name: the one mechanism behind custom filter checks, dataset steps and RL rewards.

A plugin is registered by a decorator (`Registry.register`), named in a recipe as `module:function`, or
shipped by an installed package as an entry point of the `distill.checks` group (one group for every kind;
the entry point may point at the function or at a module whose import registers it).
"""
from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from typing import Any, TypeVar

from distill.errors import DistillError

ENTRY_POINT_GROUP = "distill.checks"
DEFAULT_TIMEOUT_S = 60.0  # a check or reward registered without its own timeout
BUILTIN_REWARDS = ("accuracy", "format", "language", "overlong", "length")  # distill.rl.rewards defines them

F = TypeVar("F", bound=Callable[..., Any])


def _same(a: Callable, b: Callable) -> bool:
    """One function seen twice, e.g. a script imported again as __mp_main__ in a worker."""
    return getattr(a, "__qualname__", None) == getattr(b, "__qualname__", None) and \
        getattr(a, "__code__", None) is not None and a.__code__.co_filename == b.__code__.co_filename


def timeout_of(fn: Callable, default: float = DEFAULT_TIMEOUT_S) -> float:
    """The timeout given at registration (it rides on the function), else `default`."""
    return getattr(fn, "__distill_timeout_s__", default)


class Registry:
    """Functions of one kind by name; `timeout_s` given at registration rides on the function."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.table: dict[str, Callable] = {}

    def register(self, name: str, timeout_s: float | None = None) -> Callable[[F], F]:
        if not isinstance(name, str) or not name or ":" in name:
            raise DistillError(f"@{self.kind}({name!r}): the name must be a non-empty string without ':'")

        def decorator(fn: F) -> F:
            if name in self.table and not _same(self.table[name], fn):
                old = self.table[name]
                raise DistillError(f"@{self.kind}('{name}') is already registered by "
                                   f"{old.__module__}.{old.__qualname__}; pick another name")
            self.table[name] = fn
            fn.__distill_kind__ = self.kind  # type: ignore[attr-defined]
            if timeout_s is not None:
                fn.__distill_timeout_s__ = float(timeout_s)  # type: ignore[attr-defined]
            return fn

        return decorator

    def lookup(self, name: str) -> Callable:
        """A registered name, `module:function`, or an entry point's name; an error lists the known names."""
        if name in self.table:
            return self.table[name]
        if ":" in name:
            return self._from_path(name)
        for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if entry.name == name:
                try:
                    target = entry.load()
                except Exception as exc:
                    raise DistillError(f"{self.kind} '{name}': entry point {entry.value!r} of group "
                                       f"'{ENTRY_POINT_GROUP}' failed to load: {exc}") from exc
                if name in self.table:  # the module registered it on import
                    return self.table[name]
                if callable(target):
                    return target
                raise DistillError(f"{self.kind} '{name}': entry point {entry.value!r} is not callable and "
                                   f"registered no {self.kind} of that name")
        known = ", ".join(sorted(self.table)) or "none"
        raise DistillError(f"unknown {self.kind} '{name}'. Registered: {known}. Use a registered name, "
                           f"'module:function', or an entry point in the '{ENTRY_POINT_GROUP}' group.")

    def _from_path(self, spec: str) -> Callable:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise DistillError(f"{self.kind} '{spec}': cannot import module '{module_name}' ({exc})") from exc
        target: Any = module
        for part in attr.split("."):
            target = getattr(target, part, None)
            if target is None:
                raise DistillError(f"{self.kind} '{spec}': module '{module_name}' has no attribute '{attr}'")
        if not callable(target):
            raise DistillError(f"{self.kind} '{spec}': '{attr}' is not callable")
        return target


REWARDS = Registry("reward")  # here, below the configs, so RewardConfig can check a name without loading rewards
