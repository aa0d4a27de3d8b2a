"""`distill sft --check` and `sft.chat_template`: a student without a template gets the recipe's, and each
template / EOS / generation-config / eval-prompt / BOS / context mismatch is refused on a purpose-built
broken template (tiny model: its SmolLM2 tokenizer, seconds per test)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_sft_support import gsm8k_rows, tiny_config, trace_record, write_traces

from distill.chat_templates import TEMPLATES
from distill.config import PromptConfig, SFTConfig
from distill.errors import DistillError
from distill.records import Trace
from distill.sft import train
from distill.sft.check import check
from distill.sft.data import IGNORE, build_example, load_tokenizer

CHATML_TURN = "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
# Each template breaks one thing and keeps everything else ChatML.
BROKEN = {
    # The assistant's text is replaced: the student would train on "OK", not the trace.
    "assistant_turn": ("{% for m in messages %}{% if m['role'] == 'assistant' %}"
                       "{{ '<|im_start|>assistant\\nOK<|im_end|>\\n' }}{% else %}" + CHATML_TURN
                       + "{% endif %}{% endfor %}"
                       "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"),
    # The turn closes with a marker the vocabulary lacks: split into pieces, never trained as one token.
    "end_of_turn": ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|end|>\\n' }}"
                    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"),
    # The generation prompt is not how the conversation renders the assistant's header.
    "eval_prompt": ("{% for m in messages %}" + CHATML_TURN + "{% endfor %}"
                    "{% if add_generation_prompt %}{{ '<|im_start|>assistant:\\n' }}{% endif %}"),
    # BOS written twice.
    "bos": ("{{ bos_token + bos_token }}{% for m in messages %}" + CHATML_TURN + "{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"),
}


@pytest.fixture(scope="module")
def trace() -> Trace:
    return Trace.model_validate(trace_record(0, gsm8k_rows(1)[0]))


def jinja(tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.jinja"
    path.write_text(BROKEN[name])
    return str(path)


def checks(config: SFTConfig, trace: Trace, prompts: PromptConfig | None = None) -> list[str]:
    return [f.check for f in check(config, trace, prompts or PromptConfig())]


def test_a_sound_template_passes_own_and_named(trace):
    assert checks(SFTConfig(model="bundled:tiny", max_length=2048), trace) == []
    for name in TEMPLATES:
        assert checks(SFTConfig(model="bundled:tiny", chat_template=name, max_length=2048), trace) == [], name


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_each_broken_template_is_refused_with_what_to_change(tmp_path, trace, broken):
    findings = check(SFTConfig(model="bundled:tiny", chat_template=jinja(tmp_path, broken), max_length=2048),
                     trace, PromptConfig())
    assert broken in [f.check for f in findings]
    message = next(f.message for f in findings if f.check == broken)
    assert "sft." in message or "template" in message  # says what to change


def test_generation_config_that_would_not_stop_is_refused(trace):
    # gemma's <end_of_turn> is added to the SmolLM2 tokenizer: an unmerged adapter is served with the base's
    # generation config, which stops on <|im_end|> only.
    config = SFTConfig(model="bundled:tiny", chat_template="gemma", method="lora", merge=False, max_length=2048)
    assert checks(config, trace) == ["generation_config"]
    assert checks(config.model_copy(update={"merge": True}), trace) == []


def test_eval_prompts_other_than_the_traces_are_refused(trace):
    config = SFTConfig(model="bundled:tiny", max_length=2048)
    assert checks(config, trace, PromptConfig(system_prompt="Be brief.")) == ["eval_prompt"]
    assert checks(config, trace, PromptConfig(templates={"math": "Solve: {problem}"})) == ["eval_prompt"]


def test_context_window_shorter_than_max_length_is_refused(trace):
    assert checks(SFTConfig(model="bundled:tiny", max_length=100_000), trace) == ["context_window"]


def student_without_template(tiny_model: str, folder: Path) -> Path:
    """The tiny model as a base model: its tokenizer's chat template removed."""
    shutil.copytree(tiny_model, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    settings.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    return folder


def test_a_student_without_template_is_refused_until_the_recipe_gives_one(tiny_model, tmp_path, trace):
    base = student_without_template(tiny_model, tmp_path / "base")
    with pytest.raises(DistillError, match="sft.chat_template"):
        check(SFTConfig(model=str(base), max_length=2048), trace)
    assert checks(SFTConfig(model=str(base), chat_template="chatml", max_length=2048), trace) == []


def test_recipe_template_is_trained_with_its_new_end_of_turn_and_saved_with_the_student(tiny_model, tmp_path):
    """gemma's turn tokens are new to this vocabulary: added, embeddings grown, <end_of_turn> trained as the
    last label, and the merged student carries the template and stops on it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    base = student_without_template(tiny_model, tmp_path / "base")
    write_traces(tmp_path / "kept.jsonl", 8)
    config = tiny_config(tmp_path, model=str(base), chat_template="gemma", max_steps=2, merge=True)
    tokenizer = load_tokenizer(str(base), "gemma", ())
    end = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    row = trace_record(0, gsm8k_rows(1)[0])
    labels = [t for t in build_example(tokenizer, row["prompt"], row["reasoning"], row["answer"])["labels"]
              if t != IGNORE]
    assert end >= 49152 and labels[-1] == end

    result = train(config, progress=False)
    saved = AutoTokenizer.from_pretrained(result.merged_dir)
    assert saved.chat_template == TEMPLATES["gemma"].jinja
    assert saved.convert_tokens_to_ids("<end_of_turn>") == end
    eos = GenerationConfig.from_pretrained(result.merged_dir).eos_token_id
    assert end in ([eos] if isinstance(eos, int) else eos)
    model = AutoModelForCausalLM.from_pretrained(result.merged_dir)
    assert model.get_input_embeddings().num_embeddings == len(saved)
    # The new rows were trained (peft's trainable tokens), not left at the mean they started from.
    rows = model.get_input_embeddings().weight
    assert not rows[end].allclose(rows[49152:end].mean(0) if end > 49152 else rows[:49152].mean(0))


def test_training_refuses_a_broken_template_before_loading_weights(tmp_path):
    config = tiny_config(tmp_path, chat_template=jinja(tmp_path, "end_of_turn"))
    with pytest.raises(DistillError, match="- end_of_turn: "):
        train(config, progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_cli_check_refuses_in_one_paragraph_and_exits_2(tmp_path):
    write_traces(tmp_path / "kept.jsonl", 2)
    cli = [sys.executable, str(Path(__file__).parents[1] / "cli.py")]
    common = ["sft", "--check", "--model", "bundled:tiny", "--train-file", str(tmp_path / "kept.jsonl"),
              "max_length=1024"]
    bad = subprocess.run(cli + common + [f"chat_template={jinja(tmp_path, 'bos')}"], capture_output=True, text=True,
                         check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "- bos: " in bad.stderr and "twice" in bad.stderr


def test_the_base_is_evaluated_in_the_recipe_template(tiny_model, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    from distill.chat_templates import templated_model

    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    base = student_without_template(tiny_model, tmp_path / "base")
    folder = Path(templated_model(str(base), "chatml"))
    assert AutoTokenizer.from_pretrained(folder).chat_template == TEMPLATES["chatml"].jinja
    assert (folder / "model.safetensors").resolve() == (base / "model.safetensors").resolve()  # linked, not copied
    assert templated_model(str(base), "chatml") == str(folder)  # cached
    with pytest.raises(DistillError, match="lacks"):  # gemma's turn tokens have no rows in this base
        templated_model(str(base), "gemma")
