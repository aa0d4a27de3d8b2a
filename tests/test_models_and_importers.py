"""The bundled models convert once and load; importers map the shared benchmarks onto Problem."""
import gzip
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from distill.importers import import_problems
from distill.jsonl import read_jsonl
from distill.models import convert_gguf, resolve_model, smollm2_gguf_path
from distill.records import Problem

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CLI = [sys.executable, str(Path(__file__).parents[1] / "cli.py")]


def test_bundled_smollm2_loads_with_transformers_and_chats(smollm2):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2)
    assert (Path(smollm2) / "model.safetensors").exists()
    assert model.config.model_type == "llama" and 130e6 < model.num_parameters() < 140e6
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}],
                                         tokenize=False, add_generation_prompt=True)
    assert text.rstrip().endswith("<|im_start|>assistant")
    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=24, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    assert "4" in tokenizer.decode(out[0, ids["input_ids"].shape[1]:])


@pytest.mark.slow  # end to end, over 10 s: out of the inner loop (make test-fast)
@pytest.mark.vllm
def test_bundled_smollm2_loads_with_vllm(vllm_engine):
    from vllm import SamplingParams

    out = vllm_engine.generate(["The capital of France is"], SamplingParams(temperature=0, max_tokens=4))
    assert "Paris" in out[0].outputs[0].text


def test_tiny_model_shares_the_tokenizer(tiny_model, smollm2):
    from transformers import AutoConfig, AutoTokenizer

    assert AutoConfig.from_pretrained(tiny_model).num_hidden_layers == 2
    assert AutoTokenizer.from_pretrained(tiny_model).get_vocab() == AutoTokenizer.from_pretrained(smollm2).get_vocab()


@pytest.mark.slow  # end to end, over 10 s: out of the inner loop (make test-fast)
def test_concurrent_conversion_converts_once(tmp_path):
    target = tmp_path / "converted"
    results, errors = [], []

    def worker():
        try:
            results.append(convert_gguf(smollm2_gguf_path(), target))
        except Exception as exc:  # noqa: BLE001 - any failure in the thread is surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and results == [target, target]
    assert sorted(p.name for p in target.iterdir() if p.suffix == ".safetensors") == ["model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".converted")]  # no temp dirs left


def test_cards_and_reports_name_a_cached_model_by_its_source_not_this_machines_cache(tiny_model, tmp_path):
    from distill.chat_templates import templated_model
    from distill.models import shown_model

    assert shown_model(tiny_model) == "bundled:tiny" and "/" in tiny_model
    templated = templated_model(tiny_model, "chatml")  # SmolLM2's vocabulary has ChatML's turn tokens
    assert shown_model(templated) == "bundled:tiny + chat template chatml"
    assert shown_model("Qwen/Qwen2.5-Math-1.5B") == "Qwen/Qwen2.5-Math-1.5B"
    assert shown_model(str(tmp_path)) == str(tmp_path)  # a folder distill did not build: as given


def test_unknown_model_specs_fail_clearly(tmp_path):
    from distill.errors import DistillError

    with pytest.raises(DistillError, match="unknown bundled model"):
        resolve_model("bundled:nope")
    with pytest.raises(DistillError, match="no such"):
        resolve_model(str(tmp_path / "missing.gguf"))


def test_import_gsm8k_math_humaneval(tmp_path):
    n = import_problems("gsm8k", SHARED / "gsm8k" / "test.jsonl", tmp_path / "g.jsonl", limit=5)
    gsm = list(read_jsonl(tmp_path / "g.jsonl", Problem))
    assert n == 5 and gsm[0].answer == "18" and gsm[0].domain == "math"
    import_problems("math", SHARED / "math500" / "test.jsonl", tmp_path / "m.jsonl", limit=3)
    assert all(p.answer for p in read_jsonl(tmp_path / "m.jsonl", Problem))
    raw = tmp_path / "he.jsonl"
    with gzip.open(SHARED / "humaneval" / "HumanEval.jsonl.gz", "rt") as handle:
        raw.write_text("".join(next(handle) for _ in range(2)))
    import_problems("humaneval", raw, tmp_path / "h.jsonl")
    he = list(read_jsonl(tmp_path / "h.jsonl", Problem))
    assert he[0].id == "HumanEval/0" and he[0].domain == "code" and "check(has_close_elements)" in he[0].tests


def test_import_any_jsonl_with_a_field_map(tmp_path):
    src = tmp_path / "mine.jsonl"
    src.write_text("\n".join(json.dumps({"q": f"What is {i}+1?", "label": i + 1}) for i in range(3)) + "\n")
    proc = subprocess.run(CLI + ["import", "jsonl", str(src), "-o", str(tmp_path / "p.jsonl"),
                                 "--field", "problem=q", "--field", "answer=label"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    problems = list(read_jsonl(tmp_path / "p.jsonl", Problem))
    assert [p.answer for p in problems] == ["1", "2", "3"]
