"""This CPU's peak FLOP/s, the yardstick both benches report achieved FLOP/s against."""
from __future__ import annotations

import os
from pathlib import Path


def cpu_peak_flops() -> dict:
    """This CPU's peak FLOP/s from /proc/cpuinfo: cores x clock x FLOPs a cycle of its widest unit.

    AMX-BF16: 1024 bf16 FLOPs a cycle a core (one 16x32 by 32x16 tile multiply-add every 16 cycles);
    AVX-512 FMA: 2 units x 16 fp32 lanes x 2 = 64 fp32 FLOPs a cycle. Sustained clocks under AMX are lower
    than the nominal one, so the achieved fraction is, if anything, understated."""
    text = Path("/proc/cpuinfo").read_text()
    flags = set(next(line for line in text.splitlines() if line.startswith("flags")).split(":", 1)[1].split())
    mhz = float(next(line for line in text.splitlines() if line.startswith("cpu MHz")).split(":", 1)[1])
    cores = len(os.sched_getaffinity(0))
    per_cycle = {"bf16": 1024 if "amx_bf16" in flags else (128 if "avx512_bf16" in flags else 64),
                 "fp32": 64 if "avx512f" in flags else 32}
    return {f"{k}_gflops": round(cores * mhz * 1e-3 * v, 1) for k, v in per_cycle.items()} | {
        "cores": cores, "mhz": mhz, "flops_per_cycle_core": per_cycle, "bf16_unit": bf16_unit(per_cycle["bf16"])}


def bf16_unit(flops_per_cycle: int) -> str:
    """The unit the bf16 peak assumes (the peak, and so the unit, differs between the boxes runs land on)."""
    return {1024: "AMX", 128: "AVX512-BF16"}.get(flops_per_cycle, "no bf16 unit")
