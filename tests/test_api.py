"""The top-level API: one name per stage, each the stage's own function, and nothing heavy at import."""
import subprocess
import sys


def test_each_trainer_is_named_for_its_stage_and_is_that_stage_s_function():
    import distill
    from distill.kd import onpolicy
    from distill.rl import grpo
    from distill.sft import train as sft_train

    assert distill.train_sft is sft_train and sft_train.__module__ == "distill.sft.train"
    assert distill.train_rl is grpo.train
    assert distill.train_kd is onpolicy.train
    assert not hasattr(distill, "train")  # it meant SFT alone; the stage names say which trainer runs
    assert set(distill.__all__) >= {"generate", "filter_traces", "train_sft", "train_rl", "train_kd", "evaluate",
                                    "run", "SFTConfig", "RLConfig", "KDConfig"}


def test_importing_distill_loads_no_torch_and_no_vllm():
    code = "import sys, distill; print(sorted(m for m in ('torch', 'vllm', 'transformers') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
