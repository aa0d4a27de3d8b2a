"""What reproduces an evaluation number, recorded next to it in scores.json and the model card.

A pass@1 can be compared with a published one only when it was judged the same way on the same data:
the benchmark's bytes (digest), the prompt template and the model's chat template (and their hashes),
the sampling settings, k and the seeds, the verifier (a digest of its source, the extraction rules, its
time bounds, the sandbox) and the versions of the libraries that decide a verdict or a sample.
"""
from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from distill.config import EvalConfig
from distill.files import file_digest
from distill.records import Problem

VERIFY_DIR = Path(__file__).resolve().parents[1] / "verify"
# Libraries that decide a verdict (math-verify, its LaTeX parser, sympy), or a sample (the engines).
LIBRARIES = ("distill", "math-verify", "latex2sympy2_extended", "sympy", "antlr4-python3-runtime", "vllm",
             "transformers", "torch", "datasets")
EXTRACTOR = ("math: the boxes that end the answer, joined with math-verify's rule (next to each other, or "
             "apart by 'and', 'or', a comma or a semicolon), else the last 'the answer is' phrase up to its "
             "sentence end; code: the last python code block; mcq: the letter")


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def verifier_digest() -> str:
    """sha256 of the verifier's source (distill/verify/*.py, sorted): equal digests judge alike."""
    digest = hashlib.sha256()
    for path in sorted(VERIFY_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def chat_template(model_path: str) -> dict[str, str | None]:
    """The model's own chat template (a local folder's tokenizer_config.json or chat_template.jinja) and its
    hash; None where the model is not a local folder (a hub id resolves to the cached copy when served)."""
    folder = Path(model_path)
    text = None
    if (folder / "chat_template.jinja").is_file():
        text = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    elif (folder / "tokenizer_config.json").is_file():
        value = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template")
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True) if value else None
    return {"sha256": text_digest(text) if text is not None else None, "source": str(folder) if text else None}


def reproduce_record(config: EvalConfig, problem_sets: dict[str, dict[str, Problem]],
                     models: dict[str, dict[str, str]]) -> dict[str, Any]:
    prompts = config.prompts.model_dump(mode="json")
    return {
        "benchmarks": {b.name: {"path": str(b.path), "sha256": file_digest(b.path),
                                "problems": len(problem_sets[b.name]), "limit": b.limit}
                       for b in config.benchmarks},
        "prompt_template": {"settings": prompts, "sha256": text_digest(json.dumps(prompts, sort_keys=True))},
        "chat_templates": {label: chat_template(meta["path"]) for label, meta in models.items()},
        "sampling": config.sampling.model_dump(mode="json"),
        "k": config.k,
        "seeds": {"sampling": config.sampling.seed, "bootstrap": config.sampling.seed,
                  "per_sample": "seeded by (seed, problem id, sample index)"},
        "backend": config.backend,
        "verifier": {"source_sha256": verifier_digest(), "extractor": EXTRACTOR,
                     "math_timeout_s": config.math_timeout_s,
                     "sandbox": config.sandbox.model_dump(mode="json")},
        "libraries": library_versions(),
    }


def reproduce_markdown(scores: dict[str, Any]) -> list[str]:
    """The card's 'Reproduce' section, from scores.json's record (nothing when it has none)."""
    record = scores.get("reproduce")
    if not record:
        return []
    libs = ", ".join(f"{k} {v}" for k, v in record["libraries"].items() if v)
    lines = ["### Reproduce\n", "| what | value |", "|---|---|"]
    lines += [f"| benchmark `{name}` | {b['problems']} problems, sha256 `{b['sha256']}` |"
              for name, b in record["benchmarks"].items()]
    lines += [f"| prompt template | sha256 `{record['prompt_template']['sha256']}` |"]
    lines += [f"| chat template ({label}) | sha256 `{t['sha256']}` |" for label, t in record["chat_templates"].items()
              if t["sha256"]]
    sampling = record["sampling"]
    lines += [(f"| sampling | temperature {sampling.get('temperature')}, top-p {sampling.get('top_p')}, max tokens "
              f"{sampling.get('max_tokens')}, k {record['k']}, seed {record['seeds']['sampling']} |"),
              (f"| verifier | source sha256 `{record['verifier']['source_sha256']}`, math timeout "
              f"{record['verifier']['math_timeout_s']} s |"),
              f"| libraries | {libs} |", "",
              "`distill eval --rescore RUN` re-judges the stored samples with the current verifier.\n"]
    return lines
