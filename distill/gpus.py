"""GPUs `distill plan` knows: dense bf16 peak, memory and a price, each figure with where it comes from, and the
model FLOP utilisation the GPU check (bench/gpu/check.py) measured on one, where it has run.

Peaks are the vendor's dense figures (the datasheets print the 2:4-sparsity figure, twice as large, next to
them; no training run uses sparsity). Memory is what `torch.cuda.get_device_properties().total_memory` reports
(a little under the marketing GB). Prices are rough 2025 on-demand cloud figures: pass --usd-per-hour for yours.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GPU:
    name: str
    bf16_tflops: float  # dense, no sparsity
    memory_gib: float
    usd_per_hour: float
    source: str
    matches: tuple[str, ...] = ()  # substrings of torch.cuda.get_device_name() that mean this card


GPUS = {g.name: g for g in (
    GPU("h100", 989.4, 79.6, 2.50, "NVIDIA H100 Tensor Core GPU datasheet (SXM5): BF16 1,979 TFLOPS with sparsity",
        ("H100 80GB HBM3", "H100 SXM")),
    GPU("h100-pcie", 756.0, 79.6, 2.00, "NVIDIA H100 datasheet (PCIe): BF16 1,513 TFLOPS with sparsity",
        ("H100 PCIe",)),
    GPU("h200", 989.4, 139.8, 3.50, "NVIDIA H200 Tensor Core GPU datasheet (SXM): BF16 1,979 TFLOPS with "
        "sparsity; same compute as the H100 SXM, 141 GB HBM3e", ("H200",)),
    GPU("a100", 312.0, 79.6, 1.50, "NVIDIA A100 Tensor Core GPU datasheet (80GB SXM): BF16 312 TFLOPS dense, "
        "624 with sparsity", ("A100-SXM4-80GB", "A100 80GB")),
    GPU("a100-40gb", 312.0, 39.4, 1.20, "NVIDIA A100 datasheet (40GB): BF16 312 TFLOPS dense", ("A100-SXM4-40GB",)),
    GPU("l40s", 362.05, 44.5, 1.00, "NVIDIA L40S datasheet: BF16 362.05 TFLOPS dense, 733 with sparsity", ("L40S",)),
    GPU("l4", 121.0, 22.0, 0.80, "NVIDIA L4 datasheet: BF16 242 TFLOPS with sparsity", ("L4",)),
)}

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results" / "gpu.json"  # in a checkout


def gpu_for_device(device_name: str) -> GPU | None:
    """The table's GPU for a CUDA device name (`torch.cuda.get_device_name()`), if it is one of them."""
    for gpu in sorted(GPUS.values(), key=lambda g: -max((len(m) for m in g.matches), default=0)):
        if any(m.lower() in device_name.lower() for m in gpu.matches):
            return gpu
    return None


def measured_sft_utilisation(gpu: str, results: Path = RESULTS) -> tuple[float, str] | None:
    """The full fine-tune's model FLOP utilisation the GPU check measured on this GPU (its latest GPU run), with
    where it was measured; None where the check has not run on one."""
    if not results.exists():
        return None
    try:
        runs = json.loads(results.read_text()).get("runs", [])
    except (OSError, ValueError):
        return None
    for run in reversed(runs):
        if run.get("rehearse"):
            continue
        peak = run.get("parts", {}).get("peak", {})
        card = gpu_for_device(str(peak.get("device", "")))
        mfu = run.get("verdict", {}).get("sft_full_mfu")
        if card is not None and card.name == gpu and mfu:
            return float(mfu), (f"bench/gpu/check.py on {peak['device']} ({run.get('started', '?')}): full fine-tune "
                                f"of a Qwen2.5-Math-1.5B-shaped student at 4k tokens, against the measured peak")
    return None
