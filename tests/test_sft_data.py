"""SFT data: labels cover exactly the assistant turn and its EOS, templates that strip thinking, packing."""
from __future__ import annotations

import json

import pytest
import torch
from test_sft_support import gsm8k_rows, trace_record, write_traces

from distill.chat_format import assistant_turn
from distill.errors import DistillError
from distill.sft.data import IGNORE, build_dataset, build_example, load_tokenizer
from distill.sft.packing import PackedCollator, check_packing, pack

# The DeepSeek-R1-Distill pattern with SmolLM2's special tokens: every assistant message loses its
# <think>...</think> part, and the generation prompt prefills "<think>\n".
STRIPPING_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}{% set c = m['content'] %}"
    "{% if '</think>' in c %}{% set c = c.split('</think>')[-1] %}{% endif %}"
    "{{ '<|im_start|>assistant\n' + c + '<|im_end|>\n' }}"
    "{% else %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n<think>\n' }}{% endif %}"
)
# No special token closes a turn: the EOS must be appended, or the student never learns to stop. The
# generation prompt ends in a space, which BPE would merge with the completion's first character.
PLAIN_TEMPLATE = ("{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
                  "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")


@pytest.fixture
def tokenizer(tiny_model):
    return load_tokenizer(tiny_model)


@pytest.fixture
def fresh_tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)  # a copy whose template a test may replace


def _labelled(example):
    return [t for t in example["labels"] if t != IGNORE]


def test_labels_cover_exactly_the_assistant_turn_and_eos(tokenizer):
    messages = [{"role": "user", "content": "What is 6 times 7?"}]
    reasoning, answer = "6 * 7 = 42.", "The answer is $\\boxed{42}$."
    ex = build_example(tokenizer, messages, reasoning, answer)

    # The ids are apply_chat_template's own, and the prompt is exactly what inference feeds the model.
    assistant = {"role": "assistant", "content": assistant_turn(reasoning, answer)}
    templated = tokenizer.apply_chat_template([*messages, assistant], tokenize=True)["input_ids"]
    prompt = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)["input_ids"]
    assert ex["input_ids"] == templated
    start = len(prompt)
    end = start + ex["input_ids"][start:].index(tokenizer.eos_token_id)
    assert all(t == IGNORE for t in ex["labels"][:start])                     # system + user + header
    assert ex["labels"][start:end + 1] == ex["input_ids"][start:end + 1]      # completion + EOS
    assert all(t == IGNORE for t in ex["labels"][end + 1:])                   # the template's trailing "\n"
    assert ex["labels"][end] == tokenizer.eos_token_id
    assert tokenizer.decode(_labelled(ex)) == assistant["content"] + "<|im_end|>"
    assert ex["template_kept_reasoning"] is True


def test_template_that_strips_thinking_still_trains_on_the_reasoning(fresh_tokenizer):
    fresh_tokenizer.chat_template = STRIPPING_TEMPLATE
    messages = [{"role": "user", "content": "What is 6 times 7?"}]
    reasoning, answer = "Six sevens: 7+7+7+7+7+7 = 42.", "\\boxed{42}"
    # What the template alone would train on: the reasoning is gone.
    rendered = fresh_tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": assistant_turn(reasoning, answer)}], tokenize=False)
    assert reasoning not in rendered

    ex = build_example(fresh_tokenizer, messages, reasoning, answer)
    assert ex["template_kept_reasoning"] is False
    prompt = fresh_tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)["input_ids"]
    assert ex["input_ids"][:len(prompt)] == prompt  # ends with the prefilled "<think>\n"
    assert all(t == IGNORE for t in ex["labels"][:len(prompt)])
    # Trained: everything after the prefill, up to and including the end-of-turn token.
    assert fresh_tokenizer.decode(_labelled(ex)) == f"{reasoning}\n</think>\n\n{answer}<|im_end|>"


def test_template_without_turn_token_gets_eos_appended(fresh_tokenizer):
    fresh_tokenizer.chat_template = PLAIN_TEMPLATE
    messages = [{"role": "user", "content": "2+2?"}]
    ex = build_example(fresh_tokenizer, messages, "2+2=4", "4")
    assert _labelled(ex)[-1] == fresh_tokenizer.eos_token_id
    assert fresh_tokenizer.decode(_labelled(ex)) == "<think>\n2+2=4\n</think>\n\n4<|im_end|>"
    # The sequence starts with the prompt exactly as inference tokenizes it, not the merged " <" token.
    prompt = fresh_tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)["input_ids"]
    assert ex["input_ids"][:len(prompt)] == prompt


def test_stop_token_inside_the_text_is_refused(tokenizer):
    with pytest.raises(DistillError, match="end-of-turn token"):
        build_example(tokenizer, [{"role": "user", "content": "hi"}], "thinking<|im_end|>more", "done")


def test_dataset_applies_overlong_policy_and_holds_out_whole_problems(tmp_path, tiny_model):
    path = write_traces(tmp_path / "kept.jsonl", 12, samples=2)
    with open(path, "a") as out:  # a rejected verdict: must not be trained on
        out.write(json.dumps(trace_record(99, gsm8k_rows(1)[0], kept=False)) + "\n")
    lengths = [len(build_example(load_tokenizer(tiny_model), r["prompt"], r["reasoning"], r["answer"])["input_ids"])
               for r in map(json.loads, path.read_text().splitlines()[:24])]
    limit = sorted(lengths)[len(lengths) // 2]  # half the examples are longer

    dropped = build_dataset(path, tiny_model, limit, "drop", 0.25, 0, tmp_path / "cache-a")
    over = sum(n > limit for n in lengths)
    assert dropped.report["counts"] == {"ok": 24 - over, "truncated": 0, "dropped_overlong": over, "not_kept": 1}
    assert dropped.report["tokens_after_policy"] == sum(n for n in lengths if n <= limit)

    truncated = build_dataset(path, tiny_model, limit, "truncate", 0.25, 0, tmp_path / "cache-b")
    assert truncated.report["counts"]["truncated"] == over
    assert max(len(x) for x in truncated.train["input_ids"]) <= limit
    assert truncated.stop_id == load_tokenizer(tiny_model).eos_token_id

    # 12 problems x 2 samples, 25% held out by problem: 3 problems, both samples of each, none trained on.
    assert truncated.report["eval_problems"] == 3
    assert len(truncated.eval) == 6 and len(truncated.train) == 18
    train_ids = {tuple(x) for x in truncated.train["input_ids"]}
    assert not train_ids & {tuple(x) for x in truncated.eval["input_ids"]}


def test_bad_record_names_file_and_line(tmp_path, tiny_model):
    path = write_traces(tmp_path / "kept.jsonl", 3)
    lines = path.read_text().splitlines()
    record = json.loads(lines[1])
    del record["prompt"]
    path.write_text("\n".join([lines[0], json.dumps(record), lines[2]]) + "\n")
    with pytest.raises(DistillError, match=r"kept\.jsonl:2: field 'prompt'"):
        build_dataset(path, tiny_model, 512, "drop", 0.0, 0, tmp_path / "cache")


def _per_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every supervised next-token prediction, in order."""
    logits, labels = logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1)
    keep = labels != IGNORE
    return torch.nn.functional.cross_entropy(logits[keep], labels[keep], reduction="none")


def test_packed_and_unpacked_batches_give_the_same_per_token_loss(tmp_path, tiny_model):
    from transformers import AutoModelForCausalLM

    data = build_dataset(write_traces(tmp_path / "kept.jsonl", 6), tiny_model, 512, "drop", 0.0, 0,
                         tmp_path / "cache")
    packed = pack(data.train, 1024, enabled=True)
    unpacked = pack(data.train, 1024, enabled=False)
    assert len(packed) < len(unpacked) == 6
    collate = PackedCollator(pad_token_id=load_tokenizer(tiny_model).pad_token_id)
    packed_batch, unpacked_batch = collate(list(packed)), collate(list(unpacked))
    assert int(packed_batch["num_real_tokens"]) == int(unpacked_batch["num_real_tokens"])

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # a non-trivial model: random init gives near-uniform logits
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)

    def losses(batch, **extra):
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False,
                           **extra).logits
        return _per_token_loss(logits, batch["labels"])

    # The same supervised tokens, in a different order: compare them as sorted multisets of losses.
    a, b = losses(packed_batch).sort().values, losses(unpacked_batch).sort().values
    assert a.shape == b.shape and a.numel() > 500
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # Under one plain causal mask the same packed rows give different losses: the check can fail.
    leaky = losses(packed_batch, attention_mask=torch.ones_like(packed_batch["input_ids"])).sort().values
    assert (leaky - b).abs().max() > 1e-2
    assert check_packing(model)["packed_vs_alone"] < 1e-4
