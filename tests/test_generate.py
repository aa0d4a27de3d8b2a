"""Generation parts that need no model: prompts, reasoning extraction, the seeded sampler, shards, stats."""
from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest
import torch

from distill.config import GenerateConfig, PromptConfig, config_hash
from distill.errors import DistillError
from distill.generation import generate
from distill.generation.extract import split_completion
from distill.generation.prompts import build_messages, render_prompt
from distill.generation.sampling import sample_rows
from distill.generation.seeds import request_key, uniform
from distill.generation.shards import expected_keys, merge_shards, parse_shard, shard_of, split_shard
from distill.generation.stats import quantiles
from distill.records import Problem, Trace


def split_reasoning(completion: str, *, prefilled_think: bool, reasoning_content: str | None,
                    fmt: str) -> tuple[str, str]:
    """(reasoning, answer) of one completion, as a pair: split_completion without the rule it used."""
    split = split_completion(completion, prefilled_think=prefilled_think,
                             reasoning_content=reasoning_content, fmt=fmt)
    return split.reasoning, split.answer


# ------------------------------------------------------------------------------------------- prompts


def test_messages_follow_r1_defaults():
    messages = build_messages(Problem(id="p", problem="What is 2+3?"), PromptConfig())
    assert messages == [{"role": "user", "content": "What is 2+3?\nPlease reason step by step, and put your "
                                                     "final answer within \\boxed{}."}]


def test_messages_system_prompt_and_mcq_choices():
    prompts = PromptConfig(system_prompt="Be brief.")
    problem = Problem(id="q", problem="Pick one.", domain="mcq", choices=["red", "blue"])
    messages = build_messages(problem, prompts)
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert "A. red\nB. blue" in messages[1]["content"]
    assert messages[1]["content"].startswith("Pick one.")


def test_template_errors_name_the_domain():
    with pytest.raises(DistillError, match="no prompt template for domain 'code'"):
        build_messages(Problem(id="c", problem="x", domain="code"), PromptConfig(templates={"math": "{problem}"}))
    with pytest.raises(DistillError, match=r"prompts.templates.math.*\{\{ \}\}"):
        build_messages(Problem(id="m", problem="x"), PromptConfig(templates={"math": "{problem} {answer}"}))


def test_render_prompt_prefills_think_once(smollm2):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    messages = [{"role": "user", "content": "hi"}]
    text = render_prompt(tokenizer, messages, PromptConfig())
    assert text.endswith("<|im_start|>assistant\n<think>\n")
    assert render_prompt(tokenizer, messages, PromptConfig(prefill_think=False)).endswith("assistant\n")
    # A reasoning model whose template already opens the block gets no second tag.
    tokenizer.chat_template = ("{% for m in messages %}{{ m['content'] }}{% endfor %}"
                               "{% if add_generation_prompt %}<|Assistant|><think>\n{% endif %}")
    text = render_prompt(tokenizer, messages, PromptConfig())
    assert text == "hi<|Assistant|><think>\n"


# ------------------------------------------------------------------------------------------ extract


def test_split_think_tags_and_prefill():
    assert split_reasoning("<think>\nadd them\n</think>\n\nThe sum is \\boxed{5}.", prefilled_think=False,
                           reasoning_content=None, fmt="auto") == ("add them", "The sum is \\boxed{5}.")
    # The prompt opened the block: the completion starts inside it.
    assert split_reasoning("add them\n</think>\n\n\\boxed{5}", prefilled_think=True,
                           reasoning_content=None, fmt="think") == ("add them", "\\boxed{5}")
    # Cut off before closing: all reasoning, no answer.
    split = split_completion("<think>\nstill going", prefilled_think=False, reasoning_content=None, fmt="auto")
    assert (split.reasoning, split.answer, split.how) == ("still going", "", "unclosed_think")


def test_split_reasoning_content_from_server():
    assert split_reasoning("The answer is 5.", prefilled_think=False, reasoning_content="2+3=5",
                           fmt="auto") == ("2+3=5", "The answer is 5.")


def test_split_plain_chain_of_thought():
    text = "First, 2 + 3 = 5.\nCheck: 5 - 3 = 2.\n\nSo the final answer is \\boxed{5}."
    split = split_completion(text, prefilled_think=False, reasoning_content=None, fmt="auto")
    assert (split.reasoning, split.answer, split.how) == (
        "First, 2 + 3 = 5.\nCheck: 5 - 3 = 2.", "So the final answer is \\boxed{5}.", "plain")
    # A prefilled <think> the model ignored: still split as plain CoT because an answer marker is there.
    assert split_completion(text, prefilled_think=True, reasoning_content=None, fmt="auto").how == "plain"
    code = "I loop over the list.\n\n```python\ndef f(x):\n    return x\n```\nDone."
    assert split_reasoning(code, prefilled_think=False, reasoning_content=None, fmt="plain") == (
        "I loop over the list.", "```python\ndef f(x):\n    return x\n```\nDone.")
    assert split_reasoning("just words", prefilled_think=False, reasoning_content=None,
                           fmt="plain") == ("", "just words")


# ------------------------------------------------------------------------------------------ sampling


def test_request_key_is_sha256_of_seed_problem_sample():
    digest = hashlib.sha256(b"7\x00gsm8k-1\x003").digest()
    assert request_key(7, "gsm8k-1", 3) == int.from_bytes(digest[:8], "big") >> 1
    keys = {request_key(0, "p", s) for s in range(100)} | {request_key(1, "p", s) for s in range(100)}
    assert len(keys) == 200 and all(0 <= k < 2**63 for k in keys)


def test_uniforms_are_deterministic_and_uniform():
    draws = [uniform(request_key(0, "p", 0), t) for t in range(20000)]
    assert draws == [uniform(request_key(0, "p", 0), t) for t in range(20000)]
    assert all(0.0 <= u < 1.0 for u in draws)
    assert abs(sum(draws) / len(draws) - 0.5) < 0.01
    deciles = Counter(int(u * 10) for u in draws)
    assert all(abs(c / len(draws) - 0.1) < 0.01 for c in deciles.values())


@pytest.mark.parametrize("vocab,scale", [(40, 1.0), (400, 0.3)])  # nucleus inside / wider than the top-64
def test_sample_rows_draws_the_top_p_distribution(vocab, scale):
    torch.manual_seed(0)
    logits = torch.randn(vocab) * scale
    temperature, top_p, draws = 0.6, 0.95, 40000
    u = torch.tensor([uniform(request_key(0, "x", 0), t) for t in range(draws)], dtype=torch.float64)
    tokens = sample_rows(logits.expand(draws, vocab).contiguous(), torch.full((draws,), temperature),
                         torch.full((draws,), top_p), u)
    probs = torch.softmax(logits.double() / temperature, -1)
    ordered, index = probs.sort(descending=True)
    keep = (ordered.cumsum(0) - ordered) < top_p
    expected = torch.zeros(vocab, dtype=torch.float64)
    expected[index[keep]] = ordered[keep] / ordered[keep].sum()
    observed = torch.bincount(tokens, minlength=vocab).double() / draws
    assert set(tokens.unique().tolist()) <= set(index[keep].tolist())  # never outside the nucleus
    # Each token's frequency within 5 standard errors of its probability.
    tolerance = 5 * torch.sqrt(expected * (1 - expected) / draws) + 1e-9
    assert bool(((observed - expected).abs() <= tolerance).all())


# ------------------------------------------------------------------------------------------- shards


def test_shard_of_is_stable_and_balanced():
    ids = [f"gsm8k-{i}" for i in range(4000)]
    assert [shard_of(i, 4) for i in ids] == [shard_of(i, 4) for i in ids]
    counts = Counter(shard_of(i, 4) for i in ids)
    assert set(counts) == {0, 1, 2, 3} and all(800 < c < 1200 for c in counts.values())
    assert shard_of("abc", 1000) == int.from_bytes(hashlib.sha256(b"abc").digest()[:8], "big") % 1000


def test_parse_and_split_shards():
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "x/2", "1/0", "1"):
        with pytest.raises(DistillError, match="shard"):
            parse_shard(bad)
    ids = [f"p{i}" for i in range(2000)]
    parent = {i for i in ids if shard_of(i, 3) == 1}
    parts = [{i for i in ids if shard_of(i, parse_shard(s)[1]) == parse_shard(s)[0]}
             for s in split_shard("1/3", 4)]
    assert set().union(*parts) == parent and sum(map(len, parts)) == len(parent)


def _trace(pid: str, sample: int, text: str = "t", digest: str = "h1") -> dict:
    return Trace(problem_id=pid, sample=sample, teacher="m", prompt=[], completion=text,
                 config_hash=digest).to_json()


def _write(path, rows, tail: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)


def test_merge_reports_gaps_duplicates_and_conflicts(tmp_path):
    a, b, out = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "merged.jsonl"
    _write(a, [_trace("p1", 0), _trace("p1", 1), _trace("p2", 0)])
    _write(b, [_trace("p2", 0), _trace("p2", 1, "x"), _trace("p1", 1, "different")], tail='{"problem_id": "p3"')
    problems = [Problem(id=f"p{i}", problem="?") for i in (1, 2, 3)]
    report = merge_shards([a, b], out, expected_keys(problems, 2))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(t["problem_id"], t["sample"]) for t in lines] == [("p1", 0), ("p1", 1), ("p2", 0), ("p2", 1)]
    assert lines[1]["completion"] == "t"  # the first copy wins
    assert report["written"] == 4 and report["duplicates"] == 2
    assert report["conflicting_duplicates"] == 1 and report["conflicting_keys"] == ["p1#1"]
    assert report["missing"] == 2 and report["missing_keys"] == ["p3#0", "p3#1"]
    assert report["bad_lines"] == 1 and report["complete"] is False
    assert json.loads((tmp_path / "merged.merge.json").read_text()) == report
    with pytest.raises(DistillError, match="no such shard"):
        merge_shards([tmp_path / "nope.jsonl"], out)


def test_merge_of_clean_shards_is_complete(tmp_path):
    rows = [_trace(f"p{i}", s) for i in range(6) for s in range(2)]
    paths = []
    for k in range(3):
        path = tmp_path / f"s{k}.jsonl"
        _write(path, [r for r in rows if shard_of(r["problem_id"], 3) == k])
        paths.append(path)
    report = merge_shards(paths, tmp_path / "all.jsonl",
                          expected_keys([Problem(id=f"p{i}", problem="?") for i in range(6)], 2))
    assert report["complete"] and report["written"] == 12 and report["missing"] == 0


# -------------------------------------------------------------------------------- stats and errors


def test_quantiles_nearest_rank():
    stats = quantiles(Counter({10: 5, 20: 4, 100: 1}))
    assert stats == {"count": 10, "mean": 23.0, "min": 10, "max": 100, "total": 230,
                     "p50": 10, "p90": 20, "p99": 100}
    assert quantiles(Counter()) == {"count": 0}


def test_generate_refuses_bad_input(tmp_path):
    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps({"id": "a", "problem": "1+1"}) + "\n" + json.dumps({"id": "a", "problem": "2"}) + "\n")
    config = GenerateConfig(backend="hf", model="bundled:tiny", problems=problems, output=tmp_path / "t.jsonl")
    with pytest.raises(DistillError, match="problem id 'a' appears twice"):
        generate(config, progress=False)
    with pytest.raises(DistillError, match="no output file"):
        generate(GenerateConfig(problems=problems), progress=False)
    # An output written under another config is not silently extended.
    other = config.model_copy(update={"sampling": config.sampling.model_copy(update={"temperature": 1.0})})
    (tmp_path / "t.jsonl").write_text(json.dumps(_trace("a", 0, digest=config_hash(other))) + "\n")
    with pytest.raises(DistillError, match="holds traces made with config"):
        generate(config, progress=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    with pytest.raises(DistillError, match=r"bad.jsonl:1: field 'problem'"):
        generate(config.model_copy(update={"problems": bad, "output": tmp_path / "u.jsonl"}), progress=False)
