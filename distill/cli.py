"""The `distill` command line: one command per stage, plus run, demo, recipes, models and import.

Every stage command takes an optional recipe YAML and dotted `key=value` overrides; the few flags are
shorthands for the most common overrides. The stage config classes in distill.config are the single
source of truth, so the CLI never defines a default of its own.
"""
from __future__ import annotations

import functools
import importlib
import json
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from distill.errors import DistillError
from distill.files import output_dir
from distill.resources import find_recipe, shipped_recipes

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Distil reasoning teachers into small students: generate -> filter -> sft -> eval.")
recipes_app = typer.Typer(no_args_is_help=True, help="List, show and copy the shipped recipes; print the schema.")
app.add_typer(recipes_app, name="recipes")
console = Console(stderr=True)



def recipe_args(example: str):
    """The `[RECIPE.yaml] [KEY=VALUE ...]` argument, with an example that works as written for this command
    (in a recipe the keys are relative to the command's own section)."""
    return Annotated[list[str] | None, typer.Argument(
        help=f"[RECIPE.yaml or shipped name] then KEY=VALUE overrides, e.g. {example}", show_default=False)]


@app.callback()
def main_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show the libraries' logs, warnings and bars "
                                                                 "(vLLM, transformers, datasets, ...)")] = False,
):
    """Distil reasoning teachers into small students: generate -> filter -> sft -> eval."""
    from distill import logs

    logs.configure(verbose)


def print_error(message: str) -> None:
    """The message as plain text: paths and specs such as ORG/NAME[:CONFIG] are not rich markup."""
    console.print(Text.assemble(("error: ", "bold red"), message), highlight=False, soft_wrap=True)


def friendly_errors(fn):
    """User errors become one short red paragraph and exit code 2; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DistillError as exc:
            print_error(str(exc))
            raise typer.Exit(2) from None
        except OSError as exc:
            # A path the checks up front could not foresee (it changed during the run), a model or dataset a
            # library could not open: still one sentence, never a traceback.
            print_error(f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc) or type(exc).__name__)
            raise typer.Exit(2) from None
        except UnicodeError as exc:
            print_error(f"text that is not valid UTF-8 ({exc.reason} at offset {exc.start}); re-encode the input as "
                        "UTF-8" if isinstance(exc, (UnicodeDecodeError, UnicodeEncodeError)) else str(exc))
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: everything written so far is kept; rerun the same "
                          "command to resume.[/]")
            raise typer.Exit(130) from None

    return wrapper


def stage_module(name: str):
    """Import a stage when its command runs, so `--help` does not load torch and vLLM."""
    return importlib.import_module(name)


def split_args(args: list[str] | None) -> tuple[Path | None, list[str]]:
    args = list(args or [])
    recipe = None
    if args and "=" not in args[0]:
        recipe = Path(args.pop(0))
        if recipe.suffix not in (".yaml", ".yml") and not recipe.exists():
            recipe = find_recipe(str(recipe))
    bad = [a for a in args if "=" not in a]
    if bad:
        raise DistillError(f"expected KEY=VALUE overrides after the recipe, got {bad}")
    return recipe, args


def flag_overrides(**flags) -> list[str]:
    return [f"{key}={json.dumps(value) if not isinstance(value, str) else value}"
            for key, value in flags.items() if value is not None]


# ------------------------------------------------------------------------------------------- stages
@app.command()
@friendly_errors
def generate(
    args: recipe_args("demo sampling.n=8") = None,
    model: Annotated[str | None, typer.Option(help="teacher: hub id, folder, .gguf or bundled:NAME")] = None,
    problems: Annotated[Path | None, typer.Option(help="Problem JSONL")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Trace JSONL to write (appends, resumes)")] = None,
    n: Annotated[int | None, typer.Option("-n", help="samples per problem")] = None,
    backend: Annotated[str | None, typer.Option(help="vllm | openai | hf")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="completion budget")] = None,
    shard: Annotated[str | None, typer.Option(help="K/N: this worker's slice of the problems")] = None,
    limit: Annotated[int | None, typer.Option(help="only the first N problems")] = None,
):
    """Sample chain-of-thought traces from a teacher (vLLM, OpenAI-compatible server or transformers)."""
    from distill.config import load_stage

    recipe, overrides = split_args(args)
    overrides += flag_overrides(model=model, problems=problems and str(problems), output=out and str(out),
                                backend=backend, shard=shard, limit=limit)
    overrides += flag_overrides(**{"sampling.n": n, "sampling.max_tokens": max_tokens})
    config = load_stage("generate", recipe, overrides)
    if config.problems is None:
        raise DistillError("no problems given: pass --problems FILE.jsonl or set generate.problems in the recipe")
    result = stage_module("distill.generation").generate(config)
    console.print(f"[green]wrote[/] {result.output} ({result.written} new, {result.skipped} already there)")


@app.command()
@friendly_errors
def merge(
    shards: Annotated[list[Path], typer.Argument(help="shard Trace JSONL files")],
    out: Annotated[Path, typer.Option("--out", "-o", help="merged Trace JSONL")],
    problems: Annotated[Path | None, typer.Option(help="Problem JSONL, to report gaps")] = None,
    n: Annotated[int | None, typer.Option("-n", min=1, help="samples per problem expected")] = None,
    allow_empty: Annotated[bool, typer.Option("--allow-empty", help="accept a shard with no valid trace (else an "
                                                                    "error: the output is not replaced)")] = False,
):
    """Join generation shards: report gaps and duplicates."""
    shards_mod = stage_module("distill.generation.shards")
    expected = None
    if problems is not None:
        expected = list(shards_mod.expected_keys(problems, n or 1))
        if not expected:
            raise DistillError(f"--problems {problems}: holds no problems, so every trace would be unexpected")
    report = shards_mod.merge_shards(list(shards), out, expected, allow_empty=allow_empty)
    console.print_json(data=report)


@app.command("filter")
@friendly_errors
def filter_(
    args: recipe_args("demo select.k=1") = None,
    input: Annotated[Path | None, typer.Option("--input", "-i", help="Trace JSONL")] = None,
    problems: Annotated[Path | None, typer.Option(help="Problem JSONL with gold answers and tests")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="where kept/rejected/stats go")] = None,
    allow_empty: Annotated[bool | None, typer.Option("--allow-empty", help="accept an input with no traces and "
                                                                           "write empty outputs")] = None,
    dataset_dir: Annotated[Path | None, typer.Option(help="where the kept traces go as a Hugging Face dataset "
                                                          "(hf/, train.parquet); default OUT_DIR/dataset")] = None,
    export: Annotated[bool, typer.Option(help="also write the kept traces as a dataset, as `distill run` does")]
        = True,
):
    """Rejection sampling: keep verified, clean, deduplicated, decontaminated traces, and export them as a
    dataset whose `messages` are exactly what `distill sft` trains on."""
    from distill.config import load_stage

    recipe, overrides = split_args(args)
    overrides += flag_overrides(input=input and str(input), problems=problems and str(problems),
                                output_dir=out_dir and str(out_dir), allow_empty=allow_empty or None)
    config = load_stage("filter", recipe, overrides)
    if config.input is None:
        raise DistillError("no traces given: pass --input TRACES.jsonl or set filter.input in the recipe")
    module = stage_module("distill.filter")
    result = module.filter_traces(config)
    console.print(module.funnel_table(result))
    console.print(f"[green]kept[/] {result.kept}, rejected {result.rejected} -> {result.output_dir}")
    if export:
        exported = stage_module("distill.export").export_dataset(
            Path(result.output_dir) / "kept.jsonl", dataset_dir or Path(result.output_dir) / "dataset",
            allow_empty=config.allow_empty)
        console.print(f"[green]dataset[/] {exported.rows} rows: {exported.dataset_dir}, {exported.parquet_path}")


@app.command()
@friendly_errors
def sft(
    args: recipe_args("demo epochs=1") = None,
    model: Annotated[str | None, typer.Option(help="student: hub id, folder, .gguf or bundled:NAME")] = None,
    train_file: Annotated[Path | None, typer.Option(help="kept traces JSONL")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="student output folder")] = None,
    method: Annotated[str | None, typer.Option(help="full | lora | qlora")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print config, trainable params, memory estimate")] = False,
    world_size: Annotated[int, typer.Option(min=1, help="devices, for the --dry-run memory estimate")] = 1,
    check: Annotated[bool, typer.Option("--check", help="only check the student's chat template, EOS, generation "
                                                         "config and eval prompt on a kept trace (runs before "
                                                         "every training too)")] = False,
):
    """Fine-tune a student on kept traces (full, LoRA or QLoRA); saves adapter and merged model."""
    from distill.config import is_recipe, load_stage

    recipe, overrides = split_args(args)
    overrides += flag_overrides(model=model, train_file=train_file and str(train_file),
                                output_dir=out_dir and str(out_dir), method=method)
    config = load_stage("sft", recipe, overrides)
    # The prompts eval will send: the recipe's (eval inherits generate's), else the defaults.
    eval_prompts = load_stage("eval", recipe).prompts if recipe is not None and is_recipe(recipe) else None
    if config.train_file is None:
        raise DistillError("no training data: pass --train-file KEPT.jsonl or set sft.train_file")
    from distill.sft.data import check_train_file

    check_train_file(config.train_file)  # before the model is looked at: bad data is the cheap error
    module = stage_module("distill.sft")
    if dry_run:
        console.print_json(data=module.dry_run(config, world_size=world_size))
        return
    if check:
        from distill.sft.check import check as check_student
        from distill.sft.check import first_trace, refuse

        refuse(check_student(config, first_trace(Path(config.train_file)), eval_prompts))
        console.print(f"[green]check passed[/]: {config.train_file} renders through the student's template, "
                      "ends on a trained end-of-turn token the saved generation config stops on, and eval's "
                      "prompt is the start of the training sequence")
        return
    output_dir(config.output_dir, "the student")
    result = module.train(config, eval_prompts=eval_prompts)
    console.print(f"[green]student[/] {result.merged_dir or result.adapter_dir or result.output_dir}")


@app.command()
@friendly_errors
def rl(
    args: recipe_args("rl/r1-zero-qwen2.5-math-1.5b problems=data/demo/train.jsonl max_steps=20") = None,
    model: Annotated[str | None, typer.Option(help="policy: base model, merged student, adapter folder or bundled:NAME")] = None,
    problems: Annotated[Path | None, typer.Option(help="Problem JSONL to train on")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="policy output folder")] = None,
    method: Annotated[str | None, typer.Option(help="full | lora | qlora")] = None,
    max_steps: Annotated[int | None, typer.Option(help="GRPO steps")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print config, trainable params, memory estimate")] = False,
    world_size: Annotated[int, typer.Option(min=1, help="devices, for the --dry-run memory estimate")] = 1,
):
    """GRPO with rule-based rewards (accuracy, format, language, ...): R1-Zero, or RL after distillation."""
    from distill.config import load_stage

    recipe, overrides = split_args(args)
    overrides += flag_overrides(model=model, problems=problems and str(problems),
                                output_dir=out_dir and str(out_dir), method=method, max_steps=max_steps)
    config = load_stage("rl", recipe, overrides)
    from distill.rl.data import check_problems

    problems_count = check_problems(config)  # before the model is looked at: bad data is the cheap error
    module = stage_module("distill.rl")
    if dry_run:
        console.print_json(data={**module.dry_run(config, world_size=world_size), "problems": problems_count})
        return
    if config.output_dir is None:
        config.output_dir = Path("runs") / "policy"
    output_dir(config.output_dir, "the policy")
    result = module.train(config, console=console)
    console.print(f"[green]policy[/] {result.policy}  (log {result.log_path}, curve {result.plot_path})")


@app.command()
@friendly_errors
def kd(
    args: recipe_args("kd/r1-distill-qwen-1.5b-from-7b max_steps=20") = None,
    model: Annotated[str | None, typer.Option(help="student: base model, merged student, adapter folder or bundled:NAME")] = None,
    teacher: Annotated[str | None, typer.Option(help="teacher: hub id, folder or bundled:NAME (same tokenizer)")] = None,
    problems: Annotated[Path | None, typer.Option(help="Problem JSONL the student answers")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="distilled student output folder")] = None,
    method: Annotated[str | None, typer.Option(help="full | lora | qlora")] = None,
    max_steps: Annotated[int | None, typer.Option(help="optimizer steps")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print config, parameters, memory estimate")] = False,
):
    """On-policy distillation: the student samples, the teacher scores every token, the student lowers its reverse KL."""
    from distill.config import load_stage

    recipe, overrides = split_args(args)
    overrides += flag_overrides(model=model, teacher=teacher, problems=problems and str(problems),
                                output_dir=out_dir and str(out_dir), method=method, max_steps=max_steps)
    config = load_stage("kd", recipe, overrides)
    module = stage_module("distill.kd")
    if dry_run:
        console.print_json(data=module.dry_run(config))
        return
    output_dir(config.output_dir, "the distilled student")
    result = module.train(config, console=console)
    console.print(f"[green]distilled student[/] {result.policy}  (log {result.log_path}, curve {result.plot_path})")


@app.command("eval")
@friendly_errors
def eval_(
    args: recipe_args("demo k=2") = None,
    models: Annotated[str | None, typer.Option(help="comma-separated models, e.g. base,runs/x/student/merged")] = None,
    bench: Annotated[list[str] | None, typer.Option(help="NAME (aime24, math500, ...: `distill benchmarks`) or "
                                                         "NAME=PROBLEMS (file, folder or hub id), repeatable")] = None,
    k: Annotated[int | None, typer.Option("-k", min=1, help="samples per problem")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N problems of each --bench")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="where scores go")] = None,
    backend: Annotated[str | None, typer.Option(help="vllm | openai | hf")] = None,
    rescore: Annotated[Path | None, typer.Option(help="an eval output folder: judge its stored samples again "
                                                      "with the current verifier, without generating")] = None,
):
    """Score models on benchmarks: pass@1 (mean of k), pass@k, cons@k, 95% intervals, side by side."""
    from distill.config import is_recipe, load_recipe, load_stage

    if rescore is not None:
        stage_module("distill.eval").rescore(rescore)
        return

    recipe, overrides = split_args(args)
    if models is not None:
        names = [m.strip() for m in models.split(",") if m.strip()]
        if not names:
            raise DistillError(f"--models '{models}': expected comma-separated models, e.g. base,runs/x/student/merged")
        overrides.append("models=" + json.dumps(names))
    if bench:
        overrides.append("benchmarks=" + json.dumps([bench_spec(item, limit) for item in bench]))
    overrides += flag_overrides(k=k, output_dir=out_dir and str(out_dir), backend=backend)
    config = load_stage("eval", recipe, overrides)
    aliases = None
    if recipe is not None and is_recipe(recipe):  # `base` and `student` name the recipe's own models
        aliases = stage_module("distill.stages.eval").model_aliases(load_recipe(recipe))
    if not (config.models or aliases) or not config.benchmarks:
        raise DistillError("eval needs --models and at least one --bench NAME=FILE (or eval.models/benchmarks)")
    output_dir(config.output_dir, "the scores")
    stage_module("distill.eval").evaluate(config, aliases=aliases)


def bench_spec(item: str, limit: int | None) -> dict:
    """`--bench NAME` (the registry) or `--bench NAME=PROBLEMS`; a local path is checked now, not after the
    models have loaded."""
    from distill.sources import parse_spec

    name, sep, path = item.partition("=")
    if not name.strip() or (sep and not path.strip()):
        raise DistillError(f"--bench '{item}': expected NAME or NAME=PROBLEMS (a file, folder or hub id), "
                           "e.g. --bench math500 or --bench heldout=data/demo/eval.jsonl")
    if not sep:
        from distill.benchmarks import REGISTRY

        if name not in REGISTRY:
            raise DistillError(f"--bench '{name}': not a benchmark distill knows ({', '.join(REGISTRY)}; "
                               "`distill benchmarks`); give a file as NAME=PROBLEMS")
        return {"name": name, "limit": limit}
    if parse_spec(path).kind in ("jsonl", "file"):  # local and cheap: read it now (a hub set is read by eval)
        from distill.problems import load_problems

        load_problems(path, limit=limit, label=f"--bench {name}")
    return {"name": name, "path": path, "limit": limit}


@app.command()
@friendly_errors
def run(args: recipe_args("demo sft.epochs=1") = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="only say what each stage would do (skip, resume, "
                                                                "run, or move aside and run) and where it writes")]
        = False):
    """Run a whole recipe: generate (or import) -> filter -> sft -> kd -> rl -> eval, each stage the recipe
    configures, skipping those done earlier for the same configuration and resuming one that was cut off."""
    from distill.config import load_recipe

    recipe_path, overrides = split_args(args)
    if recipe_path is None:
        raise DistillError("usage: distill run RECIPE.yaml [KEY=VALUE ...]  (see `distill recipes list`)")
    recipe = load_recipe(recipe_path, overrides)
    if dry_run:
        print_preview(recipe)
        return
    stage_module("distill.pipeline").run(recipe)


def print_preview(recipe) -> None:
    from rich.table import Table

    from distill.layout import RunLayout

    table = Table("stage", "would", "key", "recorded key", title=f"distill run: {recipe.run_dir}")
    for row in stage_module("distill.pipeline").preview(recipe):
        configured = row["action"] != "not configured"
        table.add_row(row["stage"], row["action"], row["key"] if configured else "-", row["recorded_key"] or "-")
    console.print(table)
    for name, path in RunLayout.of(recipe).describe().items():
        console.print(f"  {name:<14} {path}", highlight=False, markup=False)


@app.command()
@friendly_errors
def demo(
    quick: Annotated[bool, typer.Option("--quick", help="the 5-minute version: SmolLM2 distilled into itself")] = False,
    run_dir: Annotated[Path | None, typer.Option(help="where the demo writes")] = None,
    rl: Annotated[bool, typer.Option("--rl", help="GRPO after the self-distillation demo (SmolLM2): base vs SFT vs SFT+RL")] = False,
    kd: Annotated[bool, typer.Option("--kd", help="from one student: SFT on a teacher's traces vs on-policy "
                                                  "distillation vs GRPO, at equal training tokens")] = False,
    overrides: Annotated[list[str] | None, typer.Argument(
        metavar="[KEY=VALUE]...", help="changes to the demo's recipe, e.g. generate.limit=16 eval.k=2 "
                                       "(with --kd: to distill/data/demo/compare.yaml, e.g. steps=4)")] = None,
):
    """The whole loop on 2 CPU cores: SmolLM2 teaches Gemma 3 270M base; base vs distilled student, with intervals."""
    if kd:
        if rl:
            raise DistillError("distill demo: pick one of --rl and --kd")
        stage_module("distill.compare").main_kd(quick=quick, run_dir=run_dir, overrides=list(overrides or []))
        return
    if rl:
        if overrides:
            raise DistillError("distill demo --rl takes no KEY=VALUE changes: it runs the self-distillation recipe "
                               "and data/demo/rl.yaml as shipped")
        stage_module("distill.demo").main_rl(quick=quick, run_dir=run_dir)
        return
    stage_module("distill.demo").main(quick=quick, run_dir=run_dir, overrides=list(overrides or []))


@app.command()
@friendly_errors
def export(
    kept: Annotated[Path, typer.Argument(help="kept traces (e.g. RUN_DIR/filter/kept.jsonl)")],
    out_dir: Annotated[Path, typer.Option("--out-dir", "-o", help="writes OUT_DIR/hf and OUT_DIR/train.parquet")],
    push_to_hub: Annotated[str | None, typer.Option(help="also upload to this Hub dataset repo, e.g. me/traces")] = None,
    public: Annotated[bool, typer.Option("--public", help="make the pushed repo public (default private)")] = False,
    allow_empty: Annotated[bool, typer.Option("--allow-empty", help="export a file with no traces as an empty "
                                                                    "dataset (else an error)")] = False,
):
    """Kept traces as a Hugging Face dataset whose `messages` are exactly what `distill sft` trains on."""
    result = stage_module("distill.export").export_dataset(kept, out_dir, push_to_hub=push_to_hub,
                                                          private=not public, allow_empty=allow_empty)
    console.print(f"[green]wrote[/] {result.rows} rows: {result.dataset_dir} (load_from_disk), "
                  f"{result.parquet_path}" + (f"; pushed to {result.hub_url}" if result.hub_url else ""))


@app.command()
@friendly_errors
def view(
    run_dir: Annotated[Path, typer.Argument(help="a run directory (of `distill run` or `distill demo`)")],
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on (0: any free one)")] = 0,
    host: Annotated[str, typer.Option(help="address to listen on; 127.0.0.1 keeps the page on this machine")]
        = "127.0.0.1",
    no_browser: Annotated[bool, typer.Option("--no-browser", help="print the address, do not open a browser")] = False,
):
    """A local web page over a run: problems, every sample (kept, rejected and why), eval side by side, plots."""
    from distill.files import input_dir
    from distill.view import serve

    input_dir(run_dir, "a run directory (of `distill run` or `distill demo`)")

    def announce(url: str) -> None:
        console.print(f"[green]serving[/] {run_dir} at [bold]{url}[/] (Ctrl-C stops)", highlight=False)

    try:
        serve(run_dir, host, port, open_browser=not no_browser, announce=announce)
    except KeyboardInterrupt:
        console.print("stopped")


# ------------------------------------------------------------------------------------ recipes, models
def recipe_summary(path: Path) -> str:
    for line in path.read_text().splitlines():
        text = line.strip().lstrip("#").strip()
        if line.startswith("#") and text:
            return text
    return ""


@recipes_app.command("list")
@friendly_errors
def recipes_list():
    """The shipped recipes."""
    table = Table(box=None)
    table.add_column("name", no_wrap=True)  # names are what users type: never broken across lines
    table.add_column("what it is")
    for name, path in shipped_recipes().items():
        table.add_row(name, recipe_summary(path))
    Console().print(table)


@recipes_app.command("show")
@friendly_errors
def recipes_show(name: str, resolved: Annotated[bool, typer.Option(help="print every field after defaults")] = False):
    """Print a shipped recipe (or its fully resolved config)."""
    from distill.config import dump_yaml, load_recipe

    path = find_recipe(name)
    typer.echo(dump_yaml(load_recipe(path)) if resolved else path.read_text())


@recipes_app.command("cp")
@friendly_errors
def recipes_cp(name: str, dest: Path):
    """Copy a shipped recipe to edit it."""
    from distill.files import output_file

    path = find_recipe(name)
    if dest.is_dir():
        dest = dest / path.name
    if dest.exists():
        raise DistillError(f"{dest} exists; not overwriting it")
    if not dest.parent.is_dir():
        raise DistillError(f"{dest}: the folder {dest.parent} does not exist; create it first")
    shutil.copyfile(path, output_file(dest, "the copied recipe"))
    console.print(f"copied {name} -> {dest}")


@recipes_app.command("schema")
def recipes_schema():
    """JSON schema of a recipe, for editors (yaml-language-server)."""
    from distill.config import Recipe

    typer.echo(json.dumps(Recipe.model_json_schema(), indent=2))


@app.command()
@friendly_errors
def plan(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML (a shipped name or a path)")],
    gpu: Annotated[str, typer.Option(help="h100 | h100-pcie | h200 | a100 | a100-40gb | l40s | l4 "
                                          "(peaks and their sources: distill/gpus.py)")] = "h100",
    traces: Annotated[int | None, typer.Option(min=1, help="SFT traces wanted (default: the kept file, else 800k)")
                      ] = None,
    keep_rate: Annotated[float | None, typer.Option(help="share of generated traces the filter keeps, in (0, 1]")
                         ] = None,
    mean_tokens: Annotated[float | None, typer.Option(min=1, help="mean trace length (default: measured, else max/3)")
                           ] = None,
    teacher: Annotated[str | None, typer.Option(help="teacher model (default: generate.model)")] = None,
    kd_prompt_tokens: Annotated[float | None, typer.Option(min=1, help="kd: prompt tokens (default: 256)")] = None,
    kd_completion_tokens: Annotated[float | None, typer.Option(
        min=1, help="kd: completion tokens (default: the kd log's mean, else max_completion_length)")] = None,
    usd_per_hour: Annotated[float | None, typer.Option(min=0, help="price of one GPU-hour")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
):
    """GPU-hours, cost, memory per device and GPUs needed for each stage a recipe runs: the teacher's generation,
    SFT, and on-policy distillation (kd: the student's sampling, the teacher's scoring forward over every token,
    the student's update, and the teacher's memory beside the student's)."""
    from distill.config import load_recipe
    from distill.plan import plan as make_plan
    from distill.plan import print_plan

    if keep_rate is not None and not 0 < keep_rate <= 1:
        raise DistillError(f"--keep-rate {keep_rate:g}: expected a share of the traces in (0, 1], e.g. 0.3")
    path = recipe if recipe.exists() else find_recipe(str(recipe))
    result = make_plan(load_recipe(path), gpu=gpu, traces=traces, keep_rate=keep_rate, mean_tokens=mean_tokens,
                       teacher=teacher, usd_per_hour=usd_per_hour, kd_prompt_tokens=kd_prompt_tokens,
                       kd_completion_tokens=kd_completion_tokens)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    print_plan(result, console)


@app.command()
@friendly_errors
def models(
    prepare: Annotated[str | None, typer.Option(help="convert a bundled: model or .gguf now and print its folder")] = None,
):
    """Models available offline (bundled), and how to name any other."""
    from distill.models import list_models, resolve_model

    if prepare:
        typer.echo(resolve_model(prepare))
        return
    table = Table("name", "what it is", box=None)
    for row in list_models():
        table.add_row(row["name"], row["description"])
    Console().print(table)
    console.print("Anywhere a model is named you can also give a hub id, a local folder or a .gguf file.")


@app.command("import")
@friendly_errors
def import_(
    what: Annotated[str, typer.Argument(help="a dataset spec (file, save_to_disk folder, ORG/NAME\\[:CONFIG]\\[/SPLIT]), "
                                             "or a format/benchmark name followed by the source")],
    source: Annotated[str | None, typer.Argument(help="the dataset spec, when WHAT names the format", show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for problems.jsonl + traces.jsonl "
                                                          "(a .jsonl path: problems only)")] = Path("imported"),
    format: Annotated[str, typer.Option(help="auto | openr1 | s1k | openthoughts | messages | gsm8k | math | "
                                             "humaneval | problems")] = "auto",
    field: Annotated[list[str] | None, typer.Option(help="PROBLEM_FIELD=COLUMN, repeatable (problem sets)")] = None,
    domain: Annotated[str | None, typer.Option(help="math | code | mcq | text, for rows without one")] = None,
    teacher: Annotated[str | None, typer.Option(help="teacher name on imported traces")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N rows")] = None,
):
    """Import a public trace set (OpenR1-Math, Mixture-of-Thoughts, OpenThoughts, Bespoke-Stratos, s1K) as
    Problems + Traces ready for `distill filter`, or a problem set / benchmark as Problem JSONL."""
    from distill import benchmarks, importers
    from distill.files import output_file, unchanged_on_error

    named = source is not None or what in importers.FORMATS[1:] or what in benchmarks.REGISTRY
    kind, spec = (what, source) if named else (format, what)
    field_map = {}
    for item in field or []:
        key, sep, column = item.partition("=")
        if not sep or not key or not column:
            raise DistillError(f"--field '{item}': expected PROBLEM_FIELD=COLUMN, e.g. problem=question")
        field_map[key] = column
    from typing import get_args

    from distill.records import Domain

    if domain is not None and domain not in get_args(Domain):
        raise DistillError(f"--domain '{domain}': expected one of {', '.join(get_args(Domain))}")
    kinds = ("auto", *importers.FORMATS[1:], "jsonl", *benchmarks.REGISTRY)
    if kind not in kinds and kind not in importers.TRACE_FORMATS:
        raise DistillError(f"--format '{kind}': expected one of {', '.join(dict.fromkeys(kinds))}")
    if kind == "auto" and spec is not None:
        kind = importers.sniff(spec)
    if kind in importers.TRACE_FORMATS:
        output_dir(out, "the imported problems.jsonl and traces.jsonl")
        written_to = [output_file(out / name, "imported records") for name in ("problems.jsonl", "traces.jsonl")]
        with unchanged_on_error(*written_to):
            result = importers.import_traces(spec, out, format=kind, domain=domain or "math", teacher=teacher,
                                             limit=limit)
        console.print(f"[green]imported[/] {result.format}: {result.problems} problems, {result.traces} traces "
                      f"(new) -> {result.problems_path}, {result.traces_path}")
        return
    if out.suffix != ".jsonl":
        output_dir(out, "the imported problems.jsonl")
    target = output_file(out if out.suffix == ".jsonl" else out / "problems.jsonl", "the imported problems")
    with unchanged_on_error(target):
        written = importers.import_problems(kind, spec, target, field_map, domain, limit)
    console.print(f"[green]wrote[/] {written} problems to {target}")


# How each benchmark's gold answers are normalised before the verifier compares (distill.benchmarks' converters).
ANSWERS = {
    "aime24": "integer ('025' = 25)", "aime25": "integer ('025' = 25)", "math500": "LaTeX, math-verify",
    "gpqa-diamond": "letter (options shuffled)", "amc23": "number (142.0 = 142)", "gsm8k": "number after ####",
    "humaneval": "sandboxed tests", "livecodebench": "sandboxed tests",
}


@app.command("benchmarks")
def benchmarks_():
    """The benchmarks `distill eval --bench NAME` knows: domain, answer normalisation, R1's k and the source."""
    from distill.benchmarks import REGISTRY, source_of
    from distill.config import EvalConfig

    table = Table("name", "domain", "answers", "R1 k", "source (offline copy when present)", box=None)
    for bench in REGISTRY.values():
        table.add_row(bench.name, bench.domain, ANSWERS.get(bench.name, "-"), str(bench.k), source_of(bench))
    Console().print(table)
    sampling = EvalConfig().sampling
    Console().print(f"R1's protocol (eval's defaults): pass@1 = mean over k samples a problem (-k, R1's k above), "
                    f"cons@k by majority vote, temperature {sampling.temperature}, top-p {sampling.top_p}, "
                    f"{sampling.max_tokens:,} tokens, no system prompt; 95% intervals by bootstrap.",
                    highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
