"""Offline logit KD inside `distill sft` (`sft.logit_kd`) on real tiny models: the teacher's stored top-k travels
with its tokens through packing (a student equal to its teacher has no KD loss), a few steps lower a perturbed
student's top-k KL to its teacher, the store is reused and rebuilt, a tokenizer mismatch stops before any weights
load, bad values stop the CLI in one line, and a SIGKILLed run resumes without repeating a step."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_kd import swapped_vocabulary
from test_sft_support import read_log, tiny_config, write_traces

from distill.errors import DistillError
from distill.kd.losses import kd_terms
from distill.kd.offline import INDEX, STORE, ensure_store
from distill.sft import train
from distill.sft.packing import PackedCollator
from distill.sft.train import packed_data

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "distill.cli"]


def kd_config(tmp_path: Path, name: str, teacher: str, logit_kd: dict | None = None, **overrides):
    """A seconds-long full fine-tune of bundled:tiny in fp32: the student's logits compare with the teacher's
    float32 scores, so a student equal to its teacher has no KL to it."""
    settings = {"method": "full", "precision": "fp32", "max_steps": 3,
                "logit_kd": {"teacher": teacher, **(logit_kd or {})}}
    return tiny_config(tmp_path, name, **{**settings, **overrides})


# ------------------------------------------------------------------------------------ alignment and loss
@pytest.mark.parametrize("flatten", [False, True], ids=["padded-rows", "one-flat-row"])
def test_packed_rows_carry_the_teachers_topk_of_their_own_tokens(tiny_model, tmp_path, flatten):
    """The teacher against its own store, through the trainer's data path (tokenize, pack, collate): zero KL at
    every trained token of rows holding several traces, as sdpa's padded rows and varlen's flat row lay them out."""
    from transformers import AutoModelForCausalLM

    config = kd_config(tmp_path, "run", "bundled:tiny")
    store, figures = ensure_store(config, tiny_model, tiny_model, torch.float32)
    data, _, rows, _ = packed_data(config, tiny_model, "sdpa", None, store)
    # Every trace SFT trains on (the over-length one is dropped from both), k 20 x (uint16 + float16) a token.
    assert figures["traces"] == data.report["counts"]["ok"] == 23 and figures["bytes"] == figures["tokens"] * 80
    fullest = sorted(range(len(rows)), key=lambda i: -len(rows[i]["seq_lengths"]))[:2]
    picked = [rows[i] for i in fullest]
    assert sum(len(r["seq_lengths"]) for r in picked) >= 4
    batch = PackedCollator(pad_token_id=0, flatten=flatten, teacher=store)(picked)

    teacher = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    with torch.no_grad():
        logits = teacher(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    labels = batch["labels"][:, 1:]
    targets = labels != -100
    kl, nll = kd_terms(logits[:, :-1][targets], labels[targets], batch["teacher_topk_ids"],
                       batch["teacher_topk_logprobs"])
    assert len(kl) == batch["num_supervised_tokens"] and kl.abs().max() < 1e-3  # float16 storage of the log-probs
    assert nll.mean() > 1.0  # while the trace's own tokens are far from certain: the KL is not trivially zero


def test_student_equal_to_teacher_trains_on_zero_kd_loss_and_logs_both_terms(tiny_model, tmp_path):
    result = train(kd_config(tmp_path, "run", "bundled:tiny", {"alpha": 1.0}), progress=False)
    first = read_log(result.log_path)[0]
    assert abs(first["loss"]) < 1e-5 and abs(first["kd_kl"]) < 1e-5 and first["kd_ce"] > 1.0
    figures = result.metrics["logit_kd"]
    assert figures["reused"] is False and figures["bytes_per_token"] == 80 and figures["k"] == 20
    assert figures["bytes"] == 80 * figures["tokens"] and result.metrics["loss_path"] == "full_logits"

    # A rerun of another config in the same folder (its checkpoints deleted, as the refusal to resume another
    # config's says) reuses the store; another k rebuilds it.
    index = result.output_dir / STORE / INDEX
    written = index.stat().st_mtime_ns
    shutil.rmtree(result.output_dir / "checkpoints")
    again = train(kd_config(tmp_path, "run", "bundled:tiny", {"alpha": 1.0}, max_steps=1), progress=False)
    assert again.metrics["logit_kd"]["reused"] is True and index.stat().st_mtime_ns == written
    other_k = kd_config(tmp_path, "run", "bundled:tiny", {"alpha": 1.0, "top_k": 8}, max_steps=1)
    store, figures = ensure_store(other_k, tiny_model, tiny_model, torch.float32)
    assert figures["reused"] is False and figures["bytes_per_token"] == 32 and store.meta["k"] == 8
    assert not list(result.output_dir.glob(f".{STORE}*"))  # published by rename: no staging folder left


def test_a_few_steps_lower_the_students_topk_kl_to_the_teacher(smollm2, tmp_path):
    """bundled:tiny (random, SmolLM2's tokenizer) taught by SmolLM2-135M-Instruct, whose distribution is peaked
    where the random student's is flat: its top-k KL to the teacher falls within a few steps."""
    write_traces(tmp_path / "kept.jsonl", 4)  # four traces seen again and again
    result = train(kd_config(tmp_path, "run", smollm2, max_steps=8, learning_rate=3e-3), progress=False)
    kl = [row["kd_kl"] for row in read_log(result.log_path)]
    assert len(kl) == 8 and kl[0] > 1.0 and sum(kl[-2:]) / 2 < 0.85 * kl[0], kl


# ------------------------------------------------------------------------------------------ refusals
def test_tokenizer_mismatch_is_refused_before_any_weights_load(tiny_model, tmp_path):
    teacher = swapped_vocabulary(tiny_model, tmp_path / "teacher")  # its weights file is not one
    config = kd_config(tmp_path, "run", teacher)
    with pytest.raises(DistillError) as info:
        train(config, progress=False)
    message = str(info.value)
    assert message.startswith("sft.logit_kd: the teacher") and "do not share a tokenizer" in message
    assert "\n" not in message and teacher in message
    assert not (config.output_dir / STORE).exists() and not (config.output_dir / "checkpoints").exists()


def test_a_chat_template_that_adds_tokens_the_teacher_lacks_is_refused(tiny_model, tmp_path):
    config = kd_config(tmp_path, "run", "bundled:tiny", chat_template="gemma")
    with pytest.raises(DistillError) as info:
        train(config, progress=False)
    message = str(info.value)
    assert message.startswith("sft.logit_kd: ") and "sft.chat_template='gemma'" in message and "\n" not in message
    assert "'<start_of_turn>' for the student" in message and not (config.output_dir / STORE).exists()


@pytest.mark.parametrize("override,expected", [
    ("logit_kd.top_k=0", "field 'logit_kd.top_k' has the bad value 0"),
    ("logit_kd.alpha=2", "field 'logit_kd.alpha' has the bad value 2"),
])
def test_bad_logit_kd_values_stop_the_cli_in_one_line(tmp_path, override, expected):
    train_file = write_traces(tmp_path / "kept.jsonl", 2)
    done = subprocess.run([*CLI, "sft", "--train-file", str(train_file), "--out-dir", str(tmp_path / "out"),
                           "logit_kd.teacher=bundled:tiny", override], capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 2 and expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout and not (tmp_path / "out").exists()


def test_cli_overrides_reach_the_config(tmp_path):
    train_file = write_traces(tmp_path / "kept.jsonl", 2)
    done = subprocess.run([*CLI, "sft", "--train-file", str(train_file), "--model", "bundled:tiny", "--dry-run",
                           "logit_kd.teacher=bundled:tiny", "logit_kd.top_k=8"], capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    printed = done.stdout + done.stderr  # the CLI's console writes to stderr
    logit_kd = json.loads(printed[printed.index("{\n"):])["config"]["logit_kd"]
    assert logit_kd["teacher"] == "bundled:tiny" and logit_kd["top_k"] == 8 and logit_kd["alpha"] == 0.5
