"""Which models an evaluation scores: labels, aliases, and a LoRA adapter merged once so any backend serves it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distill.errors import DistillError
from distill.files import stat_fingerprint
from distill.layout import slug
from distill.models import resolve_model


@dataclass(frozen=True)
class ModelRef:
    label: str  # column name in the table, folder name under OUT
    spec: str   # what the user wrote (after alias expansion)


def parse_models(entries: list[str], aliases: dict[str, str] | None = None) -> list[ModelRef]:
    """`label=spec`, an alias (`base`, `student`) or a bare spec; labels must be unique."""
    aliases = aliases or {}
    if not entries:
        if not aliases:
            raise DistillError("eval: no models given; pass --models (e.g. bundled:smollm2-135m-instruct,"
                               "runs/demo/student/merged) or set eval.models")
        entries = list(aliases)
    refs: list[ModelRef] = []
    for entry in entries:
        label, sep, spec = entry.partition("=")
        if not sep:
            label, spec = entry, entry
        label, spec = label.strip(), spec.strip()
        if spec in aliases:
            spec = aliases[spec]
        elif not sep and label in ("base", "student"):
            raise DistillError(f"eval: '{label}' is an alias that only `distill run` (or a recipe) defines; "
                               f"pass the model itself, e.g. {label}=runs/demo/student/merged")
        refs.append(ModelRef(label if sep or entry in aliases else slug(spec), spec))
    labels = [r.label for r in refs]
    duplicates = sorted({x for x in labels if labels.count(x) > 1})
    if duplicates:
        raise DistillError(f"eval: two models share the label {duplicates}; name them with label=MODEL")
    return refs


def model_identity(path: str) -> str:
    """Identity of a model's weights: a folder's file names, sizes and mtimes, or the spec itself.

    A retrained student keeps its folder but not its mtimes, so its old samples are recognised as stale.
    """
    return stat_fingerprint(path) if Path(path).is_dir() else path


def prepare_model(ref: ModelRef, folder: Path, backend: str) -> str:
    """What the generate stage loads for `ref`: resolved, with a LoRA adapter merged once into `folder`."""
    if backend == "openai":
        return ref.spec  # the server's model name; nothing local to load
    path = resolve_model(ref.spec)
    adapter = Path(path)
    if adapter.is_dir() and (adapter / "adapter_config.json").exists() and not (adapter / "config.json").exists():
        return str(merged_once(adapter, folder / "merged"))
    return path


def merged_once(adapter: Path, target: Path) -> Path:
    """sft's adapter merge, done once: `target/.adapter` records which adapter the folder was merged from."""
    stamp = model_identity(str(adapter))
    if (target / "config.json").exists() and (target / ".adapter").exists() \
            and (target / ".adapter").read_text() == stamp:
        return target
    # Lazy: the sft package loads torch and TRL, which an evaluation of plain models never needs.
    from distill.sft.merge import merge_adapter

    merge_adapter(adapter, target)
    (target / ".adapter").write_text(stamp)
    return target
