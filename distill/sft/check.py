"""`distill sft --check`: render one kept trace the way training and eval will, and refuse what would not stop.

The known failure of distilled students is a model that never stops: the teacher's format, the student's
chat template, the saved generation config and the eval prompt disagree somewhere. Each check below looks at
the artefacts themselves (token ids, labels, the generation config the student will be saved with, the prompt
eval will send) for one trace, so it costs a tokenizer load and no weights. `train()` runs it before every
training; each finding is one paragraph saying what to change.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from distill.chat_format import THINK_CLOSE, THINK_OPEN
from distill.config import PromptConfig, SFTConfig
from distill.errors import DistillError
from distill.jsonl import JsonlReader
from distill.records import Trace
from distill.sft.data import IGNORE, SENTINEL, ExampleError, build_example, load_tokenizer, render_example


@dataclass(frozen=True)
class Finding:
    check: str     # assistant_turn | end_of_turn | generation_config | eval_prompt | bos | context_window
    message: str


def _squash(text: str) -> str:
    return "".join(text.split())  # decoding may respace text; what matters is that nothing is lost


def first_trace(train_file: Path) -> Trace:
    for trace in JsonlReader(train_file, Trace):
        if getattr(trace, "kept", True) is not False:
            return trace
    raise DistillError(f"{train_file}: no kept trace to check the chat template with")


def stop_ids_saved(model_path: str, config: SFTConfig, stop_id: int, tokenizer) -> set[int]:
    """Token ids the student's saved generation config (plus its tokenizer's EOS) will stop on.

    A full fine-tune and a merged LoRA get `stop_id` written into generation_config.json (sft.merge); an
    unmerged adapter is served with the base model's config as it is.
    """
    from transformers import GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(model_path).eos_token_id
    except OSError:
        eos = None
    ids = set() if eos is None else ({eos} if isinstance(eos, int) else set(eos))
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    if config.method == "full" or config.merge:
        ids.add(stop_id)
    return ids


def _eval_prompt_findings(tokenizer, trace: Trace, ids: list[int], prompt_len: int,
                          prompts: PromptConfig) -> list[Finding]:
    from distill.generation.prompts import render_prompt

    found = []
    system = next((m["content"] for m in trace.prompt if m["role"] == "system"), None)
    user = next((m["content"] for m in trace.prompt if m["role"] == "user"), "")
    patterns = [re.escape(t).replace(re.escape("{problem}"), "(?s:.+)").replace(re.escape("{choices}"), "(?s:.*)")
                for t in prompts.templates.values()]
    if system != prompts.system_prompt or not any(re.fullmatch(p, user) for p in patterns):
        found.append(Finding("eval_prompt", (
            f"the trace was generated with system prompt {system!r} and user turn {user[:60]!r}..., which eval's "
            f"prompts (system prompt {prompts.system_prompt!r}, templates {sorted(prompts.templates)}) would not "
            "write: the student would be evaluated on prompts it was not trained on. Give eval.prompts the same "
            "system_prompt and templates as generate.prompts (a recipe's eval inherits them when it sets none).")))
    eval_ids = tokenizer(render_prompt(tokenizer, trace.prompt, prompts), add_special_tokens=False).input_ids
    if len(eval_ids) < prompt_len or ids[:len(eval_ids)] != eval_ids:
        at = next((i for i, (a, b) in enumerate(zip(eval_ids, ids)) if a != b), min(len(eval_ids), len(ids)))
        found.append(Finding("eval_prompt", (
            f"eval's prompt is not the start of the training sequence: they part at token {at} (eval has "
            f"{tokenizer.decode(eval_ids[at:at + 8])!r}, training {tokenizer.decode(ids[at:at + 8])!r}). The "
            "student would answer a prompt it never saw. Make eval.prompts (prefill_think, chat_template_kwargs) "
            "match what the student trains on, or fix the chat template so its generation prompt is the start "
            "of the rendered conversation.")))
    return found


def check(config: SFTConfig, trace: Trace, eval_prompts: PromptConfig | None = None,
          model_path: str | None = None) -> list[Finding]:
    """Everything that would make this student fail to stop or see other prompts at eval than in training."""
    from distill.context_window import context_window
    from distill.models import resolve_model

    model_path = model_path or resolve_model(config.model)
    tokenizer = load_tokenizer(model_path, config.chat_template, tuple(config.chat_template_tokens))
    fix_template = ("set sft.chat_template to a template that renders the assistant message as given "
                    "(gemma, chatml, r1-distill) or fix the .jinja file")
    try:
        rendered = render_example(tokenizer, trace.prompt, trace.reasoning, trace.answer)
        example = build_example(tokenizer, trace.prompt, trace.reasoning, trace.answer)
    except ExampleError as exc:
        kind = "eval_prompt" if "generation prompt" in str(exc) else "assistant_turn"
        return [Finding(kind, f"trace {trace.key}: {exc}; {fix_template}.")]
    found: list[Finding] = []
    ids, labels = example["input_ids"], example["labels"]
    supervised = [t for t, label in zip(ids, labels) if label != IGNORE]
    prompt_len = next(i for i, label in enumerate(labels) if label != IGNORE) if supervised else len(ids)
    turn = tokenizer.decode(ids[prompt_len - 4:prompt_len] + supervised, skip_special_tokens=False)
    if not all(_squash(part) in _squash(turn) for part in (THINK_OPEN, trace.reasoning, THINK_CLOSE, trace.answer)):
        found.append(Finding("assistant_turn", (
            f"trace {trace.key}: the tokens trained on do not hold the think block and the answer as the trace "
            f"has them (trained: {turn[:120]!r}...); the chat template rewrites the assistant turn. "
            f"{fix_template[0].upper()}{fix_template[1:]}.")))

    # The turn must end on one special token, trained on: the template's own closing token if it has one.
    probe = tokenizer.apply_chat_template([*trace.prompt, {"role": "assistant", "content": SENTINEL}], tokenize=False)
    tail = probe[probe.find(SENTINEL) + len(SENTINEL):]  # how the template itself closes the turn
    closing = re.match(r"\s*(<[^<>\s]{1,40}>)", tail)
    template_end = closing.group(1) if closing else rendered.turn_end
    if template_end != rendered.turn_end or not supervised or supervised[-1] != example["stop_id"]:
        found.append(Finding("end_of_turn", (
            f"the chat template closes the assistant turn with {template_end!r}, but the labels end on "
            f"{rendered.turn_end!r}: {template_end!r} is not one special token of the student's vocabulary, so "
            "the student is not trained to write it. Add it with sft.chat_template_tokens (or use a named "
            "sft.chat_template, which adds its own tokens).")))
    stops = stop_ids_saved(model_path, config, example["stop_id"], tokenizer)
    if example["stop_id"] not in stops:
        found.append(Finding("generation_config", (
            f"the student is trained to end its turn with {rendered.turn_end!r} (id {example['stop_id']}), but the "
            f"generation config it will be served with stops only on {sorted(stops)}: it would never stop. Set "
            "sft.merge=true (the merged student gets it as eos_token_id), or add the id to eos_token_id in "
            f"{model_path}/generation_config.json.")))
    if tokenizer.bos_token_id is not None and ids[:2] == [tokenizer.bos_token_id] * 2:
        found.append(Finding("bos", (
            f"the rendered sequence starts with {tokenizer.bos_token!r} twice: the chat template writes it and "
            "something adds it again. distill tokenizes with add_special_tokens=False, so the template alone "
            "must write one BOS; remove the extra one from the template.")))
    if eval_prompts is not None:
        found += _eval_prompt_findings(tokenizer, trace, ids, prompt_len, eval_prompts)
    window = context_window(model_path)
    if window is not None and config.max_length > window:
        found.append(Finding("context_window", (
            f"sft.max_length is {config.max_length} but the student's context window is {window} tokens "
            f"(max_position_embeddings): lower sft.max_length to {window} or less, or pick a long-context "
            "variant of the student.")))
    return found


def refuse(findings: list[Finding]) -> None:
    if findings:
        raise DistillError("the student's chat template check failed (`distill sft --check`):\n"
                           + "\n".join(f"- {f.check}: {f.message}" for f in findings))
