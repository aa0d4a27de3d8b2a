"""The run-folder lifecycle sft, rl and kd share (distill.lifecycle), on folders built by hand: no model loads."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.config import KDConfig, RLConfig, SFTConfig, config_hash
from distill.errors import DistillError
from distill.lifecycle import (
    RunFolder,
    TrainResult,
    checkpoint_step,
    last_complete_checkpoint,
    rewind_log,
    rewound_log,
    save_trained,
)


class OneRank:
    """What the lifecycle asks of accelerate's PartialState, for one rank of a launch."""

    def __init__(self, main: bool = True):
        self.is_main_process = main
        self.barriers = 0

    def wait_for_everyone(self) -> None:
        self.barriers += 1


def checkpoint(out: Path, step: int, marker: str = "trainer_state.json") -> Path:
    folder = out / "checkpoints" / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    if marker:
        (folder / marker).write_text("{}")
    return folder


def write_log(path: Path, steps: int) -> None:
    path.write_text("".join(json.dumps({"step": s, "loss": 1 / s}) + "\n" for s in range(1, steps + 1)))


def steps_in(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


# --------------------------------------------------------------------------------------------- resume point
def test_resume_point_is_the_newest_complete_checkpoint(tmp_path):
    checkpoint(tmp_path, 2)
    checkpoint(tmp_path, 10)
    checkpoint(tmp_path, 12, marker="")  # died mid-save: no trainer_state.json
    (tmp_path / "checkpoints" / "checkpoint-final").mkdir()
    run = RunFolder(tmp_path, "sft_config.json", "SFT", "abc")
    assert run.resume_point() == tmp_path / "checkpoints" / "checkpoint-10"
    assert checkpoint_step(run.resume_point()) == 10 and checkpoint_step(None) == 0
    # kd's own loop marks a whole checkpoint with state.json
    assert last_complete_checkpoint(tmp_path / "checkpoints", "state.json") is None
    assert last_complete_checkpoint(tmp_path / "nothing") is None


@pytest.mark.parametrize("stamp,kind", [("sft_config.json", "SFT"), ("rl_config.json", "RL"), ("kd_config.json", "kd")])
def test_resume_point_refuses_checkpoints_of_another_config(tmp_path, stamp, kind):
    checkpoint(tmp_path, 4)
    (tmp_path / stamp).write_text(json.dumps({"config_hash": "other", "config": {}}))
    run = RunFolder(tmp_path, stamp, kind, "mine")
    with pytest.raises(DistillError, match=f"holds checkpoints of a different {kind} config; use another output_dir "
                                           "or delete .*checkpoints to start over"):
        run.resume_point()
    with pytest.raises(DistillError):
        run.open(SFTConfig())  # before anything is written
    assert json.loads((tmp_path / stamp).read_text())["config_hash"] == "other"
    # the same config resumes; a folder with no checkpoints is anyone's
    assert RunFolder(tmp_path, stamp, kind, "other").resume_point() is not None
    assert RunFolder(tmp_path / "empty", stamp, kind, "mine").resume_point() is None


# ---------------------------------------------------------------------------------------------------- stamp
def test_open_stamps_the_folder_as_old_runs_are_stamped(tmp_path):
    config = RLConfig(model="bundled:tiny", output_dir=tmp_path / "rl")
    run = RunFolder(Path(config.output_dir), "rl_config.json", "RL", config_hash(config))
    run.open(config)
    assert json.loads((run.out / "rl_config.json").read_text()) == {
        "config_hash": config_hash(config), "config": config.model_dump(mode="json")}

    sft = SFTConfig(output_dir=tmp_path / "sft")
    run = RunFolder(Path(sft.output_dir), "sft_config.json", "SFT", config_hash(sft), {"train_file_digest": "d1"})
    run.open(sft)
    assert list(json.loads((run.out / "sft_config.json").read_text())) == ["config_hash", "train_file_digest", "config"]


def test_checkpoints_of_another_train_file_are_moved_aside_not_resumed(tmp_path):
    config = SFTConfig(output_dir=tmp_path)
    RunFolder(tmp_path, "sft_config.json", "SFT", config_hash(config), {"train_file_digest": "old"}).open(config)
    checkpoint(tmp_path, 2)
    for name in ("trained.json", "result.json", "log.jsonl"):
        (tmp_path / name).write_text("{}")

    same = RunFolder(tmp_path, "sft_config.json", "SFT", config_hash(config), {"train_file_digest": "old"})
    same.open(config)
    assert same.resume_point() is not None and (tmp_path / "trained.json").exists()

    changed = RunFolder(tmp_path, "sft_config.json", "SFT", config_hash(config), {"train_file_digest": "new"})
    changed.open(config)
    assert changed.resume_point() is None
    assert not any((tmp_path / name).exists() for name in ("checkpoints", "trained.json", "result.json", "log.jsonl"))
    assert json.loads((tmp_path / "sft_config.json").read_text())["train_file_digest"] == "new"
    # Never deleted: the old input's run is kept whole under stale/ (distill's one staleness policy).
    [aside] = (tmp_path / "stale").iterdir()
    assert aside.name.endswith("-sft-inputs")
    assert sorted(p.name for p in aside.iterdir()) == ["checkpoints", "log.jsonl", "result.json", "trained.json"]
    assert (aside / "checkpoints" / "checkpoint-2").is_dir()


# ------------------------------------------------------------------------------------------------------ log
def test_a_fresh_start_deletes_the_old_log_and_a_resume_rewinds_it(tmp_path):
    log = tmp_path / "log.jsonl"
    write_log(log, 5)
    rank0 = OneRank()
    row = rewound_log(rank0, log, checkpoint(tmp_path, 3))
    assert row == {"step": 3, "loss": 1 / 3} and steps_in(log) == [1, 2, 3]
    assert rewound_log(rank0, log, None) is None and not log.exists()
    assert rewind_log(log, 2) is None  # no log: nothing to rewind


def test_other_ranks_read_the_row_the_main_process_rewound_to(tmp_path):
    log = tmp_path / "log.jsonl"
    write_log(log, 3)
    other = OneRank(main=False)
    assert rewound_log(other, log, checkpoint(tmp_path, 3)) == {"step": 3, "loss": 1 / 3}
    assert other.barriers == 2 and steps_in(log) == [1, 2, 3]  # it reads; it never writes
    assert rewound_log(other, log, None) is None and log.exists()  # only the main process deletes


# ----------------------------------------------------------------------------------------------------- save
def test_a_save_that_dies_leaves_no_half_folder_and_the_old_one_whole(tmp_path):
    old = tmp_path / "adapter"
    old.mkdir()
    (old / "adapter_model.safetensors").write_text("old weights")

    def dies(folder: Path) -> None:
        folder.mkdir(parents=True)
        (folder / "adapter_model.safetensors").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_trained(OneRank(), tmp_path, "lora", dies, stop_id=0)
    assert (old / "adapter_model.safetensors").read_text() == "old weights"

    def saves(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "adapter_model.safetensors").write_text("new weights")

    rank0 = OneRank()
    assert save_trained(rank0, tmp_path, "lora", saves, stop_id=0) == old
    assert (old / "adapter_model.safetensors").read_text() == "new weights" and rank0.barriers == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no staging or .old folder left


def test_a_full_model_is_published_stopping_on_the_trained_turn_end(tmp_path):
    def saves(folder: Path) -> None:
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")

    target = save_trained(OneRank(), tmp_path, "full", saves, stop_id=7)
    assert target == tmp_path / "model"
    assert json.loads((target / "generation_config.json").read_text())["eos_token_id"] == 7


def test_only_the_main_process_publishes(tmp_path):
    calls = []
    target = save_trained(OneRank(main=False), tmp_path, "lora", calls.append, stop_id=0)
    assert calls == [tmp_path / ".adapter.tmp"] and not target.exists()  # every rank saves (collective)


# --------------------------------------------------------------------------------------------------- finish
def test_trained_then_finished_then_returned_as_recorded(tmp_path):
    config = KDConfig(method="full", output_dir=tmp_path)
    run = RunFolder(tmp_path, "kd_config.json", "kd", config_hash(config), checkpoint_marker="state.json")
    state = OneRank()
    assert run.trained() is None and run.finished() is None
    metrics = run.mark_trained(state, {"config_hash": run.config_hash, "stop_token_id": 2, "steps": 3})
    assert run.trained() == metrics == json.loads((tmp_path / "trained.json").read_text())

    plotted = []
    result = run.finish(config, state, "unused", metrics, lambda log, png: plotted.append(png), "kd.png")
    assert plotted == [tmp_path / "kd.png"]
    assert result.policy == tmp_path / "model" and result.adapter_dir is None
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert run.finished() == result == TrainResult.from_json(json.loads((tmp_path / "result.json").read_text()))
    assert RunFolder(tmp_path, "kd_config.json", "kd", "another").finished() is None


def test_policy_is_the_merged_folder_then_the_adapter_then_the_output(tmp_path):
    result = TrainResult(tmp_path, tmp_path / "adapter", tmp_path / "merged", {}, tmp_path / "log", tmp_path / "png")
    assert result.policy == tmp_path / "merged"
    assert TrainResult(tmp_path, tmp_path / "adapter", None, {}, tmp_path, tmp_path).policy == tmp_path / "adapter"
    assert TrainResult(tmp_path, None, None, {}, tmp_path, tmp_path).policy == tmp_path


def finished_folder(out: Path, config) -> TrainResult:
    out.mkdir(parents=True, exist_ok=True)
    result = TrainResult(out, out / "adapter", out / "merged", {"config_hash": config_hash(config)},
                         out / "log.jsonl", out / "curve.png")
    (out / "result.json").write_text(json.dumps(result.to_json()))
    return result


def test_a_finished_run_returns_without_loading_anything(tmp_path):
    """A model that does not exist and a teacher that is not set: reaching either would fail."""
    from distill.kd import train as kd_train
    from distill.rl import train as rl_train

    rl = RLConfig(model="no-such-org/no-such-model", output_dir=tmp_path / "rl")
    recorded = finished_folder(tmp_path / "rl", rl)
    assert rl_train(rl, progress=False) == recorded
    kd = KDConfig(model="no-such-org/no-such-model", output_dir=tmp_path / "kd")
    recorded = finished_folder(tmp_path / "kd", kd)
    assert kd_train(kd, progress=False) == recorded
    assert sorted(p.name for p in (tmp_path / "kd").iterdir()) == ["result.json"]  # no stamp written either


def test_a_finished_sft_run_is_the_same_run_only_on_the_same_train_file(tmp_path):
    from test_sft_support import trace_record

    from distill.files import file_digest
    from distill.sft import train as sft_train

    traces = tmp_path / "kept.jsonl"
    traces.write_text(json.dumps(trace_record(0, {"question": "1+1?", "answer": "1 + 1 = 2 #### 2"})) + "\n")
    config = SFTConfig(model="no-such-org/no-such-model", train_file=traces, output_dir=tmp_path / "sft")
    recorded = finished_folder(tmp_path / "sft", config)
    recorded.metrics["train_file_digest"] = file_digest(traces)
    (tmp_path / "sft" / "result.json").write_text(json.dumps(recorded.to_json()))
    assert sft_train(config, progress=False) == recorded
    run = RunFolder(tmp_path / "sft", "sft_config.json", "SFT", config_hash(config), {"train_file_digest": "edited"})
    assert run.finished() is None
