"""Chat templates a recipe can give a student that has none (`sft.chat_template`): a name or a Jinja file.

R1's distilled students are base models of other families, trained on the teacher's traces in a template of
their own. The template chosen here is set on the student's tokenizer before tokenizing, and saved with the
student (tokenizer_config.json / chat_template.jinja), so vLLM, `distill eval` and users render prompts the
way training did. Tokens a template needs that the vocabulary lacks (ChatML's on a Gemma tokenizer, say) are
added as special tokens; the model's embeddings are then resized and the new rows trained.

gemma and r1-distill start with the tokenizer's BOS, as their families' own templates do (ChatML has none; in
SmolLM2 the BOS *is* <|im_start|>): prompts are tokenized with `add_special_tokens=False` everywhere in
distill (training, vLLM, hf), so the template is the only place a BOS comes from, and `distill sft --check`
refuses a doubled one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distill.errors import DistillError


@dataclass(frozen=True)
class NamedTemplate:
    jinja: str
    special_tokens: tuple[str, ...]  # added to the tokenizer when missing
    description: str


_BOS = "{%- if bos_token is not none and bos_token is defined %}{{ bos_token }}{% endif -%}"
# A system message goes before the first user turn, as Gemma's own template does (it has no system role).
_GEMMA = (_BOS + """
{%- for message in messages -%}
{%- if message['role'] == 'system' -%}{{ message['content'] }}{{ '\\n\\n' }}
{%- else -%}
{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else 'user') + '\\n' + message['content'] + '<end_of_turn>\\n' }}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}""")
_CHATML = ("""
{%- for message in messages -%}
{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}""")
# DeepSeek-R1-Distill's turn markers, without its habit of stripping <think> from assistant turns.
_R1_DISTILL = (_BOS + """
{%- for message in messages -%}
{%- if message['role'] == 'system' -%}{{ message['content'] }}
{%- elif message['role'] == 'user' -%}{{ '<｜User｜>' + message['content'] }}
{%- else -%}{{ '<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>' }}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<｜Assistant｜>' }}{%- endif -%}""")

TEMPLATES = {
    "gemma": NamedTemplate(_GEMMA, ("<start_of_turn>", "<end_of_turn>"),
                           "Gemma's turns (<start_of_turn>user / model ... <end_of_turn>); the Gemma 3 "
                           "vocabulary already holds both tokens"),
    "chatml": NamedTemplate(_CHATML, ("<|im_start|>", "<|im_end|>"),
                            "ChatML (<|im_start|>role ... <|im_end|>), as Qwen and SmolLM2 use"),
    "r1-distill": NamedTemplate(_R1_DISTILL, ("<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>"),
                                "DeepSeek-R1-Distill's turn markers, the reasoning kept in the turn"),
}


def template_source(spec: str) -> tuple[str, tuple[str, ...]]:
    """(Jinja text, special tokens it needs) for a template name or a .jinja file path."""
    if spec in TEMPLATES:
        named = TEMPLATES[spec]
        return named.jinja, named.special_tokens
    path = Path(spec).expanduser()
    if path.suffix in (".jinja", ".j2") or path.exists():
        try:
            return path.read_text(), ()
        except OSError as exc:
            raise DistillError(f"sft.chat_template: cannot read the Jinja file {path} ({exc.strerror})") from None
    raise DistillError(f"sft.chat_template: '{spec}' is neither a known template ("
                       + ", ".join(sorted(TEMPLATES)) + ") nor a .jinja file")


def give_chat_template(tokenizer, spec: str | None, extra_tokens: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Set the recipe's template on `tokenizer` (in place) and add the special tokens it needs that are missing.

    Returns the tokens added: the caller resizes the model's embeddings to `len(tokenizer)`. With `spec`
    None the student's own template stays, and a student without one is refused here, before any weights load.
    """
    if spec is None:
        if tokenizer.chat_template is None:
            raise DistillError(
                f"{tokenizer.name_or_path}: the student's tokenizer has no chat template (a base model); set "
                "sft.chat_template to one of " + ", ".join(sorted(TEMPLATES)) + " or to a .jinja file")
        return []
    jinja, needed = template_source(spec)
    vocabulary = tokenizer.get_vocab()
    wanted = list(dict.fromkeys([*needed, *extra_tokens]))
    missing = [t for t in wanted if t not in vocabulary]
    # Present but not special (Gemma's GGUF tokenizer has <end_of_turn> as a plain token) counts too: only a
    # special token is one id whatever surrounds it, and distill.sft.data recognises the turn's end by it.
    plain = [t for t in wanted if t in vocabulary and t not in tokenizer.all_special_tokens]
    if missing or plain:
        tokenizer.add_tokens([*plain, *missing], special_tokens=True)
    tokenizer.chat_template = jinja
    return missing


def template_token_ids(tokenizer, spec: str | None, extra_tokens: list[str] | tuple[str, ...] = ()) -> list[int]:
    """Ids of the turn tokens a recipe's template writes: their embedding rows are trained with LoRA too.

    A base model has seen its family's turn tokens rarely or never (Gemma 3 270M base: <end_of_turn>'s row
    sits among untrained ones, and after LoRA-only training the student scored it 51.1 against 51.3 for the
    junk token 'eleSp', so it never stopped). With tied embeddings no adapter can separate the row from its
    neighbours; training the row itself does.
    """
    if spec is None:
        return []
    _, needed = template_source(spec)
    return sorted({tokenizer.convert_tokens_to_ids(t) for t in (*needed, *extra_tokens)})


def templated_model(model_path: str, spec: str, extra_tokens: list[str] | tuple[str, ...] = ()) -> str:
    """`model_path` with the recipe's chat template: a cached folder of links to its weights and a tokenizer
    saved with the template, so eval can score the base student in the turns the student was trained in.

    A template whose tokens the vocabulary lacks cannot be served by the untrained base (no embedding rows
    for them); that is refused with what to do instead.
    """
    import hashlib

    from transformers import AutoTokenizer

    from distill.models import build_once, cache_dir, remember_source, shown_model

    source = Path(model_path)
    if not source.is_dir():
        raise DistillError(f"{model_path}: the base model must be a local folder to be given sft.chat_template "
                           "for evaluation")
    jinja, _ = template_source(spec)
    digest = hashlib.sha256(f"{source.resolve()}\0{jinja}\0{sorted(extra_tokens)}".encode()).hexdigest()[:12]
    target = cache_dir() / f"{source.name}-template-{digest}"

    def build(tmp: Path) -> None:
        tokenizer = AutoTokenizer.from_pretrained(source)
        added = give_chat_template(tokenizer, spec, extra_tokens)
        if added:
            raise DistillError(
                f"the base model cannot be evaluated in sft.chat_template={spec}: its vocabulary lacks {added}, "
                "which only the trained student has embeddings for. Evaluate the student alone "
                "(eval.models: [student]) or pick a template whose tokens the base has")
        tokenizer.save_pretrained(tmp)
        for file in source.iterdir():
            if file.is_file() and not (tmp / file.name).exists():
                (tmp / file.name).symlink_to(file.resolve())

    built = build_once(target, build)
    remember_source(built, f"{shown_model(model_path)} + chat template {spec}")
    return str(built)
