"""Teacher generation: Problems in, R1-format Traces out (see docs/generate.md).

`generate(config)` is the stage; `engine.shared_llm` the process-wide vLLM engine; `prompts`,
`extract`, `sampling` and `shards` the parts the other stages reuse.
"""
from distill.generation.stage import GenerateResult, generate

__all__ = ["GenerateResult", "generate"]
