"""What ships inside the package: the recipes and the demo's problem sets (importlib.resources).

A checkout and an installed wheel find them the same way, so `distill recipes list` and `distill demo`
work from any directory.
"""
from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

from distill.errors import DistillError


def package_root() -> Path:
    """The installed `distill` package as a folder (a wheel installs unzipped, so this is a real path)."""
    with as_file(files("distill")) as root:
        return Path(root)


def shipped_path(path: Path | None) -> Path | None:
    """A path a shipped recipe or demo file gives relative to the package (data/demo/...), made absolute."""
    if path is None:
        return None
    return path if path.is_absolute() else (package_root() / path).resolve()


def recipes_dir() -> Path:
    return package_root() / "recipes"


def shipped_recipes() -> dict[str, Path]:
    """Recipe name (path under recipes/ without .yaml) -> file; accelerate launcher configs are not recipes."""
    root = recipes_dir()
    return {str(path.relative_to(root).with_suffix("")): path
            for path in sorted(root.rglob("*.yaml")) if "accelerate" not in path.relative_to(root).parts}


def find_recipe(name: str) -> Path:
    recipes = shipped_recipes()
    if name in recipes:
        return recipes[name]
    raise DistillError(f"no recipe '{name}'; `distill recipes list` shows the shipped ones")
