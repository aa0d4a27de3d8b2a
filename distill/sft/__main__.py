"""`python -m distill.sft [RECIPE] [KEY=VALUE ...]`: the entry point `accelerate launch` runs on every rank.

    accelerate launch --config_file recipes/accelerate/zero3.yaml -m distill.sft \\
        recipes/students/qwen2.5-math-7b-full.yaml sft.train_file=runs/x/filter/kept.jsonl

Overrides are `distill` dotted keys (`max_steps=20` or `sft.max_steps=20` both work); `--dry-run` prints
the resolved config, trainable parameters and the per-device memory estimate instead of training.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from distill.errors import DistillError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill.sft", description=__doc__.splitlines()[0])
    parser.add_argument("args", nargs="*", help="an optional recipe/stage YAML, then KEY=VALUE overrides")
    parser.add_argument("--dry-run", action="store_true", help="print config, parameters, memory estimate")
    parser.add_argument("--world-size", type=int, default=int(os.environ.get("WORLD_SIZE", "1")),
                        help="devices for the --dry-run memory estimate (default: $WORLD_SIZE or 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    options = parser.parse_args(argv)

    from distill.config import load_stage

    recipe = options.args[0] if options.args and "=" not in options.args[0] else None
    overrides = [a.removeprefix("sft.") for a in options.args[1 if recipe else 0:]]
    try:
        config = load_stage("sft", recipe, overrides)
        from distill.sft import dry_run, train

        if options.dry_run:
            print(json.dumps(dry_run(config, world_size=options.world_size), indent=2, default=str))
            return 0
        result = train(config, progress=not options.no_progress)
    except DistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result.to_json(), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
