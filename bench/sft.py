"""SFT throughput and memory: `distill sft` against plain TRL (defaults, and with its own packing), achieved
FLOP/s against this CPU's peak, and peak memory vs the dry run.

    .venv/bin/python bench/sft.py [--model bundled:smollm2-135m-instruct] [--examples 40] [--skip-memory]

Data: the first `--examples` GSM8K training solutions as kept R1-format traces (<think> reasoning, boxed
answer; lengths vary like real traces), the last eight held out for the loss check. Throughput model:
SmolLM2-135M-Instruct (a model that learns, so equal held-out losses mean something; the 2-layer random
bundled:tiny ended at ln(vocabulary) = 10.76 for every contender), full fine-tune, one epoch, every
contender at TRL's default learning rate (2e-5, linear, no warmup) and ~8 traces per optimizer step, on
the CPU. Memory model: SmolLM2-135M-Instruct, two steps each of full, LoRA and QLoRA.

- TRL: `SFTTrainer(model, args=SFTConfig(output_dir, use_cpu=True, num_train_epochs=1, report_to="none"),
  train_dataset=<conversational "messages">)`: every other setting is TRL's default (8 padded sequences a
  batch, no packing, bf16 autocast, gradient checkpointing, its fused LM-head loss, loss on all tokens).
  use_cpu is required: without it TRL's default bf16=True refuses to start on a machine without a GPU.
- TRL with packing: the same plus `packing=True` (TRL's best-fit-decreasing packing, padding-free batches).
- distill: `distill.sft.train(SFTConfig(method="full", packing=True, per_device_batch_size=4, lr 2e-5
  linear))`: best-fit-decreasing packed rows (capped at the longest trace under sdpa), position-id
  example boundaries, precision "auto" (bf16 here), gradient checkpointing, assistant-only loss.

Reported: trained non-pad tokens per second of training (model loading and tokenization excluded), the
padding fraction of each, and the held-out loss of both students on the same assistant tokens (the
"equal loss" check). Then peak RSS of short full / LoRA / QLoRA runs, each in a fresh process, minus
the RSS of a process that only imported the stack, next to `distill sft --dry-run`'s estimate.
Each contender runs in its own subprocess, alternating TRL and distill `--repeats` times (the box is
shared; the best run of each counts). Writes bench/results/sft.json and bench/results/sft.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from cpu import cpu_peak_flops

DATA = ROOT.parent / "shared" / "data"
RESULTS = Path(os.environ.get("DISTILL_BENCH_RESULTS") or ROOT / "bench" / "results")  # the suite's smoke runs write elsewhere
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def write_traces(path: Path, count: int) -> Path:
    from distill.config import MATH_PROMPT

    with open(DATA / "gsm8k" / "train.jsonl", encoding="utf-8") as handle, open(path, "w") as out:
        for i, line in zip(range(count), handle):
            row = json.loads(line)
            solution, _, number = row["answer"].rpartition("####")
            reasoning, answer = solution.strip(), f"The answer is $\\boxed{{{number.strip()}}}$."
            out.write(json.dumps({
                "problem_id": f"gsm8k-{i}", "sample": 0, "teacher": "gsm8k-reference", "kept": True,
                "prompt": [{"role": "user", "content": MATH_PROMPT.format(problem=row["question"])}],
                "completion": f"<think>\n{reasoning}\n</think>\n\n{answer}", "reasoning": reasoning,
                "answer": answer}) + "\n")
    return path


def split(path: Path, held_out: int) -> tuple[list[dict], list[dict]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return rows[:-held_out], rows[-held_out:]


def heldout_loss(model, tokenizer, rows: list[dict]) -> float:
    """Mean loss over the assistant tokens (+EOS) of held-out traces: the same yardstick for both students."""
    import torch

    from distill.sft.data import IGNORE, build_example

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            ex = build_example(tokenizer, row["prompt"], row["reasoning"], row["answer"])
            ids, labels = torch.tensor([ex["input_ids"]]), torch.tensor([ex["labels"]])
            logits = model(input_ids=ids, use_cache=False).logits[0, :-1].float()
            target = labels[0, 1:]
            keep = target != IGNORE
            total += torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum").item()
            count += int(keep.sum())
    return total / count


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


# ------------------------------------------------------------------------------------------- workers
def worker_trl(args) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from distill.chat_format import assistant_turn
    from distill.models import resolve_model

    path = resolve_model(args.model)
    train_rows, held = split(Path(args.data), args.held_out)
    messages = [{"messages": [*r["prompt"], {"role": "assistant",
                                              "content": assistant_turn(r["reasoning"], r["answer"])}]}
                for r in train_rows]
    tokenizer = AutoTokenizer.from_pretrained(path)

    class Counting(DataCollatorForLanguageModeling):
        """TRL's own default collator, counting what it hands the model (real and padded tokens)."""
        real = padded = 0

        def torch_call(self, examples):
            batch = super().torch_call(examples)
            Counting.real += int(batch["attention_mask"].sum())
            Counting.padded += int(batch["attention_mask"].numel())
            return batch

    config = SFTConfig(output_dir=str(Path(args.out) / "trl"), use_cpu=True, num_train_epochs=1,
                       report_to="none", save_strategy="no", seed=0, packing=args.trl_packing)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), args=config,
                         train_dataset=Dataset.from_list(messages), processing_class=tokenizer,
                         # TRL refuses a custom collator with padding-free packing; its packed rows then
                         # hold exactly the tokens trained on, counted from the dataset below.
                         data_collator=None if args.trl_packing else Counting(pad_token_id=tokenizer.pad_token_id))
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    counted = Counting.real  # the collator also ran for nothing else: no eval set
    if args.trl_packing:
        Counting.real = Counting.padded = counted = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    name = "TRL SFTTrainer (packing=True)" if args.trl_packing else "TRL SFTTrainer (defaults)"
    return {"contender": name, "train_seconds": round(seconds, 2), "tokens": counted,
            "tokens_per_s": round(counted / seconds, 2), "padding_fraction": round(1 - counted / Counting.padded, 4),
            "steps": output.global_step, "train_loss": round(output.training_loss, 4),
            "heldout_loss": round(heldout_loss(trainer.model, tokenizer, held), 4),
            "settings": {"per_device_train_batch_size": config.per_device_train_batch_size,
                         "learning_rate": config.learning_rate, "bf16": config.bf16,
                         "gradient_checkpointing": config.gradient_checkpointing, "packing": config.packing,
                         "max_length": config.max_length}}


def worker_distill(args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.config import SFTConfig
    from distill.sft import train

    train_rows, held = split(Path(args.data), args.held_out)
    kept = Path(args.out) / "distill-train.jsonl"
    kept.write_text("".join(json.dumps(r) + "\n" for r in train_rows))
    config = SFTConfig(model=args.model, train_file=kept, output_dir=Path(args.out) / "distill", method="full",
                       packing=True, max_length=args.max_length, per_device_batch_size=args.rows,
                       gradient_accumulation_steps=1, epochs=1, learning_rate=2e-5, lr_scheduler="linear",
                       warmup_ratio=0.0, eval_fraction=0.0, save_steps=10_000, seed=0)
    result = train(config, progress=False)
    m = result.metrics
    model = AutoModelForCausalLM.from_pretrained(result.merged_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(result.merged_dir)
    return {"contender": "distill sft", "train_seconds": m["train_seconds"], "tokens": m["tokens"],
            "tokens_per_s": m["tokens_per_s"], "padding_fraction": m["padding_fraction"], "steps": m["steps"],
            "train_loss": round(m["train_loss"], 4), "heldout_loss": round(heldout_loss(model, tokenizer, held), 4),
            "settings": {"packing": True, "max_length": args.max_length, "row_length": m["row_length"],
                         "rows_per_step": args.rows, "precision": m["precision"],
                         "learning_rate": 2e-5, "gradient_checkpointing": config.gradient_checkpointing,
                         "rows": m["train_rows"]}}


def worker_memory(args) -> dict:
    from distill.config import SFTConfig
    from distill.sft import dry_run, train

    config = SFTConfig(model=args.memory_model, train_file=Path(args.data),
                       output_dir=Path(args.out) / f"mem-{args.method}",
                       method=args.method, max_length=args.mem_length, per_device_batch_size=1,
                       gradient_accumulation_steps=1, max_steps=2, eval_fraction=0.0, save_steps=10_000,
                       merge=False, seed=0)
    estimate = dry_run(config)["memory"]
    result = train(config, progress=False)
    return {"method": args.method, "model": args.memory_model, "peak_rss_gib": round(rss_gib(), 3),
            "precision": result.metrics["precision"],
            "estimate_gib": estimate["per_device_gib"]["ddp"], "estimate_breakdown_gib": estimate["breakdown_gib_one_device"],
            "max_length": args.mem_length}


def worker_baseline(args) -> dict:
    # What every worker pays before any model: python + torch + transformers + TRL + peft + bitsandbytes.
    import bitsandbytes  # noqa: F401
    import peft  # noqa: F401
    import trl  # noqa: F401

    import distill.sft  # noqa: F401
    return {"baseline_rss_gib": round(rss_gib(), 3)}


WORKERS = {"trl": worker_trl, "trl_packing": worker_trl, "distill": worker_distill, "memory": worker_memory,
           "baseline": worker_baseline}


def run_worker(kind: str, args, **extra) -> dict:
    command = [sys.executable, __file__, "--worker", kind, "--data", str(args.data), "--out", str(args.out),
               "--model", args.model, "--memory-model", args.memory_model, "--max-length", str(args.max_length),
               "--held-out", str(args.held_out),
               "--mem-length", str(args.mem_length), "--rows", str(args.rows)]
    for key, value in extra.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {kind} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_seconds"] = round(time.perf_counter() - started, 1)
    print(f"  {kind} {extra or ''}: {result}", flush=True)
    return result


CONTENDERS = ("trl", "trl_packing", "distill")


def render_markdown(report: dict) -> str:
    rows = report["throughput"]
    runs = report["all_runs_tokens_per_s"]
    peak = report["cpu_peak"]
    setup = (f"Model {report['model']} (full fine-tune), {report['examples']} GSM8K traces "
             f"({report['held_out']} held out), 1 epoch, lr 2e-5, on {report['machine']} shared with other "
             f"jobs (load average {report['load_average'][1]:.1f}): best of {report['repeats']} alternating runs "
             f"each (all runs, tokens/s: " + ", ".join(f"{k} {v}" for k, v in runs.items()) + "). "
             f"Run: `{report['command']}`. Achieved FLOP/s = (6 + 2 with gradient checkpointing) x "
             f"{report['parameters'] / 1e6:.0f}M parameters x trained tokens/s; this CPU's peak: "
             f"{peak['bf16_gflops']:.0f} GFLOP/s bf16 (AMX), {peak['fp32_gflops']:.0f} GFLOP/s fp32 (AVX-512), "
             f"{peak['cores']} cores at {peak['mhz']:.0f} MHz.")
    d, t = rows["distill"], rows["trl"]
    verdict = (f"**Speed-up: {report['speedup']:.2f}x** trained non-pad tokens/s over TRL's defaults "
               f"({report['speedup_vs_trl_packing']:.2f}x over TRL with its own packing); held-out loss "
               f"{d['heldout_loss']:.3f} vs {t['heldout_loss']:.3f} (defaults) and "
               f"{rows['trl_packing']['heldout_loss']:.3f} (packing).")
    lines = ["# SFT: distill vs plain TRL, and memory vs the dry-run estimate", "", setup, "",
             ("| contender | non-pad tokens/s | GFLOP/s | % of bf16 peak | padding | steps | train loss | "
             "held-out loss | train s |"),
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows.values():
        lines.append(f"| {row['contender']} | {row['tokens_per_s']:.1f} | {row['gflops']:.1f} | "
                     f"{100 * row['gflops'] / peak['bf16_gflops']:.1f}% | {100 * row['padding_fraction']:.1f}% | "
                     f"{row['steps']} | {row['train_loss']:.3f} | {row['heldout_loss']:.3f} | "
                     f"{row['train_seconds']:.1f} |")
    lines += ["", verdict]
    if report.get("memory"):
        lines += ["", (f"Peak memory of {report['memory_model']} (RSS; rows of {report['memory'][0]['max_length']} "
                  f"tokens, 2 steps; baseline process with the stack imported: {report['baseline_rss_gib']:.2f} GiB):"),
                  "", "| method | precision | peak RSS GiB | minus baseline | dry-run estimate GiB |",
                  "| --- | --- | ---: | ---: | ---: |"]
        for m in report["memory"]:
            lines.append(f"| {m['method']} | {m['precision']} | {m['peak_rss_gib']:.2f} | "
                         f"{m['peak_rss_gib'] - report['baseline_rss_gib']:.2f} | {m['estimate_gib']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled:smollm2-135m-instruct",
                        help="the throughput comparison's student (one that learns: the held-out losses mean something)")
    parser.add_argument("--skip-memory", action="store_true", help="throughput only")
    parser.add_argument("--trl-packing", action="store_true", help=argparse.SUPPRESS)  # set for the worker
    parser.add_argument("--memory-model", default="bundled:smollm2-135m-instruct")
    parser.add_argument("--examples", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per contender; the best counts")
    parser.add_argument("--held-out", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=2048, help="distill's max_length")
    parser.add_argument("--rows", type=int, default=4, help="distill's packed rows per step (~8 traces)")
    parser.add_argument("--mem-length", type=int, default=512, help="tokens per row in the memory runs")
    parser.add_argument("--worker", choices=sorted(WORKERS))
    parser.add_argument("--method", default="full")
    parser.add_argument("--data")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.worker:
        args.trl_packing = args.worker == "trl_packing"
        print(json.dumps(WORKERS[args.worker](args)))
        return

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-sft-") as tmp:
        args.out = tmp
        args.data = write_traces(Path(tmp) / "kept.jsonl", args.examples)
        from distill.models import resolve_model

        resolve_model(args.model)  # convert the bundled models once, outside every timing
        resolve_model(args.memory_model)
        print("throughput:", flush=True)
        runs: dict[str, list[dict]] = {k: [] for k in CONTENDERS}
        base_out = args.out
        for repeat in range(args.repeats):  # alternate, so a burst of load on the box hits all alike
            for kind in CONTENDERS:
                args.out = str(Path(base_out) / f"{kind}-{repeat}")
                Path(args.out).mkdir()
                runs[kind].append(run_worker(kind, args))
        args.out = base_out
        best = {k: max(v, key=lambda r: r["tokens_per_s"]) for k, v in runs.items()}
        memory, baseline = [], None
        if not args.skip_memory:
            print("memory:", flush=True)
            baseline = run_worker("baseline", args)["baseline_rss_gib"]
            memory = [run_worker("memory", args, method=m) for m in ("full", "lora", "qlora")]
    from distill.config import SFTConfig
    from distill.sft.modeling import count_parameters

    parameters = count_parameters(resolve_model(args.model), SFTConfig(method="full"))[0].total
    for row in best.values():  # all three train with gradient checkpointing (TRL's default, distill's)
        row["gflops"] = round(8 * parameters * row["tokens_per_s"] / 1e9, 2)
    report = {
        "model": args.model, "memory_model": args.memory_model, "examples": args.examples,
        "held_out": args.held_out, "max_length": args.max_length, "parameters": parameters,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU", "cpu_peak": cpu_peak_flops(),
        "command": " ".join(["python bench/sft.py", *sys.argv[1:]]),
        "throughput": best, "repeats": args.repeats,
        "all_runs_tokens_per_s": {k: [r["tokens_per_s"] for r in v] for k, v in runs.items()},
        "speedup": round(best["distill"]["tokens_per_s"] / best["trl"]["tokens_per_s"], 3),
        "speedup_vs_trl_packing": round(best["distill"]["tokens_per_s"] / best["trl_packing"]["tokens_per_s"], 3),
        "baseline_rss_gib": baseline, "memory": memory,
        "load_average": os.getloadavg(), "wall_seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sft.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "sft.md").write_text(render_markdown(report))
    print(render_markdown(report))


if __name__ == "__main__":
    main()
