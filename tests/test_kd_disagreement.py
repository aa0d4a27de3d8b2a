"""kd's disagreement record on real tiny models: where the student disagrees with the teacher, token by token.

teacher == student disagrees nowhere; after a few kd steps the record moves as the log's exact KL does; the
JSONL's shape; a resumed run keeps the `before` rows of its first start; and `distill view` serves the record
(a `distill kd` folder alone, or a run's kd folder found through its recipe) and draws it in headless chromium
with the model's text escaped.
"""
from __future__ import annotations

import json
import re
import shutil
import threading
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from test_kd import PROBLEMS, kd_config, perturbed_copy
from test_view import chromium, fetch

from distill.config import Recipe, dump_yaml
from distill.kd import disagreement, train
from distill.kd.teacher import Teacher
from distill.view.server import make_server, url_of

STEPS = 5
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def rows_of(out: Path, phase: str) -> list[dict]:
    return [row for row in disagreement.read(out) if row["phase"] == phase]


@pytest.fixture(scope="module")
def tokenizer_tiny(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory):
    """test_kd's reference run: a noisy copy of the tiny model distilled from it for 5 steps, every step saved."""
    student = perturbed_copy(tiny_model, tmp_path_factory.mktemp("student"), noise=0.05)
    out = tmp_path_factory.mktemp("kd") / "run"
    return train(kd_config(student, tiny_model, out, max_steps=STEPS), progress=False), student


@pytest.fixture
def served():
    servers = []

    def serve(folder: Path) -> str:
        server = make_server(folder)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return url_of(server)

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------------------------------ the record
def test_teacher_equal_to_student_disagrees_on_no_token(tiny_model, tmp_path):
    out = tmp_path / "kd"
    out.mkdir()
    # A record left by an earlier start that saved no checkpoint: a fresh start writes its own.
    (out / disagreement.FILE).write_text(json.dumps({"phase": "before", "sample": 0, "stale": True}) + "\n")
    train(kd_config(tiny_model, tiny_model, out, max_steps=1), progress=False)
    found = disagreement.read(out)
    assert [(r["phase"], r["sample"]) for r in found] == [(p, i) for p in disagreement.PHASES for i in range(4)]
    assert not any("stale" in row for row in found)
    for row in found:
        assert row["token_ids"] and max(map(abs, row["disagreement"])) < 1e-5, row["disagreement"]
        assert max(row["kl"]) < 1e-6 and row["teacher_logprobs"] == pytest.approx(row["student_logprobs"], abs=1e-5)


def test_record_shape(reference, tokenizer_tiny):
    result, _ = reference
    out = result.output_dir
    found = disagreement.read(out)
    assert [(r["phase"], r["sample"], r["step"]) for r in found] == \
        [(p, i, 0 if p == "before" else STEPS) for p in disagreement.PHASES for i in range(disagreement.SAMPLES)]
    first_ids = [json.loads(line)["id"] for line in PROBLEMS.read_text().splitlines()[:disagreement.SAMPLES]]
    assert [r["problem_id"] for r in rows_of(out, "before")] == first_ids
    for row in found:
        n = len(row["token_ids"])
        assert 1 <= n <= 8  # the run's max_completion_length (below MAX_TOKENS)
        assert all(len(row[k]) == n for k in ("tokens", "teacher_logprobs", "student_logprobs", "disagreement", "kl"))
        assert row["tokens"] == [tokenizer_tiny.decode([t]) for t in row["token_ids"]]
        assert row["completion"] == tokenizer_tiny.decode(row["token_ids"])
        assert row["disagreement"] == pytest.approx([t - s for t, s in zip(row["teacher_logprobs"],
                                                                           row["student_logprobs"])])
        assert row["mean"] == pytest.approx(sum(row["disagreement"]) / n) and min(row["kl"]) >= -1e-6
        assert row["problem"] in tokenizer_tiny.decode(row["prompt_ids"])
    # "after" scores the very tokens "before" recorded: same text, same teacher, another student.
    for before, after in zip(rows_of(out, "before"), rows_of(out, "after")):
        assert (after["prompt_ids"], after["token_ids"]) == (before["prompt_ids"], before["token_ids"])
        assert after["teacher_logprobs"] == pytest.approx(before["teacher_logprobs"], abs=1e-5)
    assert result.metrics["disagreement_s"] > 0
    assert sorted(p.name for p in out.glob(f"*{disagreement.FILE}*")) == [disagreement.FILE]  # no temp file left


def test_training_moves_the_record_as_the_log_says(reference):
    """Measured: the log's kl_exact falls over the 5 steps (0.043 -> 0.034) and so does the exact KL at the
    recorded answers' positions (0.036 -> 0.031 on the same tokens). The sampled-token difference on these
    greedy answers need not fall: the trained student is less sure of its old greedy tokens (+0.30 -> +1.14)."""
    result, _ = reference
    log = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    phases = disagreement.summary(disagreement.read(result.output_dir))
    assert log[-1]["kl_exact"] < log[0]["kl_exact"]
    assert phases["after"]["mean_kl"] < phases["before"]["mean_kl"], phases
    assert phases["after"]["tokens"] == phases["before"]["tokens"]
    moved = [abs(a - b) for before, after in zip(rows_of(result.output_dir, "before"),
                                                 rows_of(result.output_dir, "after"))
             for a, b in zip(before["student_logprobs"], after["student_logprobs"])]
    assert max(moved) > 1e-2  # the trained student scores the same tokens differently


def test_resume_keeps_the_first_before_record(reference, tiny_model, tmp_path):
    """The folder a kill after checkpoint 3 of 5 leaves: the rerun resumes, keeps the record its first start wrote
    (marked here, so a rewrite would show) and records after training what the uninterrupted run recorded."""
    result, student = reference
    out = tmp_path / "run"
    shutil.copytree(result.output_dir, out)
    for name in ("result.json", "trained.json", "metrics.json", "kd.png"):
        (out / name).unlink()
    for folder in ("model", "checkpoints/checkpoint-4", "checkpoints/checkpoint-5"):
        shutil.rmtree(out / folder)
    first = [{**row, "written_by": "the first start"} for row in rows_of(out, "before")]
    (out / disagreement.FILE).write_text("".join(json.dumps(row) + "\n" for row in first))

    resumed = train(kd_config(student, tiny_model, out, max_steps=STEPS), progress=False)
    assert resumed.metrics["resumed_from_step"] == 3
    assert rows_of(out, "before") == first
    for phase in ("after", "after_sample"):
        again, reference_rows = rows_of(out, phase), rows_of(result.output_dir, phase)
        assert [r["token_ids"] for r in again] == [r["token_ids"] for r in reference_rows]
        assert [r["disagreement"] for r in again] == \
            [pytest.approx(r["disagreement"], abs=1e-4) for r in reference_rows]


# ------------------------------------------------------------------------------------------------ the viewer
def test_view_serves_the_record_of_a_kd_folder(reference, served):
    result, _ = reference
    url = served(result.output_dir)
    status, overview = fetch(url, "/api/overview")
    assert status == 200 and overview["kd"] is True and "kd.png" in overview["plots"]
    _, page = fetch(url, "/api/kd")
    found = disagreement.read(result.output_dir)
    assert page["phases"] == disagreement.summary(found)  # JSON keeps floats exactly
    assert page["order"] == list(disagreement.PHASES)
    assert [item["problem_id"] for item in page["items"]] == [r["problem_id"] for r in rows_of(result.output_dir,
                                                                                                 "before")]
    for item in page["items"]:
        for phase in disagreement.PHASES:
            row = next(r for r in found if r["phase"] == phase and r["sample"] == item["sample"])
            shown = item["phases"][phase]
            assert (shown["tokens"], shown["disagreement"], shown["mean"]) == \
                (row["tokens"], row["disagreement"], row["mean"])


def test_view_finds_the_kd_folder_of_a_run_through_its_recipe(reference, served, tiny_model, tmp_path):
    """A pipeline run whose recipe puts kd elsewhere than RUN_DIR/kd: found through the run's layout."""
    result, _ = reference
    run_dir = tmp_path / "run"
    recipe = Recipe.model_validate({"name": "kd-view", "run_dir": str(run_dir),
                                    "kd": {"teacher": tiny_model, "output_dir": str(run_dir / "distilled")}})
    (run_dir / "distilled").mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text(dump_yaml(recipe))
    shutil.copy(result.output_dir / disagreement.FILE, run_dir / "distilled" / disagreement.FILE)
    url = served(run_dir)
    assert fetch(url, "/api/overview")[1]["kd"] is True
    _, page = fetch(url, "/api/kd")
    assert len(page["items"]) == disagreement.SAMPLES and page["phases"]["before"]["samples"] == disagreement.SAMPLES


def test_view_without_a_record_says_so(served, tmp_path):
    (tmp_path / "kept.jsonl").write_text("")  # a filter folder: a run the viewer opens, with no kd
    url = served(tmp_path)
    assert fetch(url, "/api/overview")[1]["kd"] is False
    status, body = fetch(url, "/api/kd")
    assert status == 400 and "no kd disagreement record" in body["error"]


def hostile_record(folder: Path, tiny_model: str, tokenizer) -> list[dict]:
    """A record whose answer is markup, scored by real models through the record's own code."""
    prompt = tokenizer("Say hello.", add_special_tokens=False)["input_ids"]
    tokens = tokenizer(HOSTILE, add_special_tokens=False)["input_ids"]
    answers = disagreement.Answers(["p0"], [f"What does {HOSTILE} do?"], [prompt], [tokens])
    teacher = Teacher.load(tiny_model, torch.float32)
    student = Teacher.load(tiny_model, torch.float32).model
    with torch.no_grad():
        for param in student.parameters():
            param.add_(0.05 * torch.randn_like(param))
    found = []
    for phase in disagreement.PHASES:
        scores = disagreement.score(answers, teacher, student, tokenizer.pad_token_id, nullcontext)
        found += disagreement.rows(phase, 0, answers, scores, tokenizer)
    # The tiny vocabulary splits markup into '<', 'script', '>'; larger ones hold whole tags in one token.
    for row in found:
        row["tokens"][0] = HOSTILE
    disagreement.write(folder, found)
    return found


@pytest.mark.slow  # headless chromium: `make browser` installs it for `make test`
def test_kd_page_colours_every_token_and_escapes_model_text(tiny_model, tokenizer_tiny, served, tmp_path):
    found = hostile_record(tmp_path / "kd", tiny_model, tokenizer_tiny)
    url = served(tmp_path / "kd")
    dom = chromium("--dump-dom", f"{url}#kd", user_dir=tmp_path / "chrome")
    assert 'data-rendered="kd"' in dom and 'id="kd-legend"' in dom
    assert len(re.findall(r'class="tok( strong)?"', dom)) == sum(len(row["tokens"]) for row in found)
    assert "log p_teacher − log p_student = " in dom  # each token's value, on hover
    assert "<script>alert" not in dom and "<img src" not in dom  # markup is text, never elements
    markup = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"
    assert dom.count(f">{markup}</span>") == len(found) and f"What does {markup} do?" in dom
