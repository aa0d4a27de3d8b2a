"""`python -m distill.generation [RECIPE.yaml] [key=value ...]`: the generate stage without the full CLI.

Data-parallel workers are started as `python -m distill.generation --config-json FILE --quiet`.
"""
from __future__ import annotations

import argparse
import json
import sys

from distill.config import GenerateConfig, load_stage, validate_config
from distill.errors import DistillError
from distill.generation.stage import generate
from distill.logs import apply_in_process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill.generation", description=__doc__)
    parser.add_argument("args", nargs="*", help="an optional recipe/stage YAML, then key=value overrides")
    parser.add_argument("--config-json", help="a complete GenerateConfig as JSON (used by workers)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    options = parser.parse_args(argv)
    apply_in_process()  # a worker of `distill generate`: as quiet as the command that started it
    try:
        if options.config_json:
            with open(options.config_json, encoding="utf-8") as handle:
                config = validate_config(GenerateConfig, json.load(handle), options.config_json)
        else:
            recipe = options.args[0] if options.args and "=" not in options.args[0] else None
            overrides = options.args[1:] if recipe else options.args
            config = load_stage("generate", recipe, overrides)
        result = generate(config, progress=not options.quiet)  # type: ignore[arg-type]
    except DistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run = result.stats["run"]
    print(f"{result.output}: {result.stats['traces']} traces ({result.written} new, {result.skipped} already there), "
          f"{run['output_tokens_per_s']} output tok/s; stats in {result.stats_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
