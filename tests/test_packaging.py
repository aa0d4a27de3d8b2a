"""The built wheel works on its own: installed in a fresh virtual environment, run from outside the checkout.

The environment sees the project's dependencies through a .pth file naming the site-packages that holds
them (the test's own environment), but not the checkout: `distill` itself comes only from the wheel, so
a recipe or data file missing from the package data fails here.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import typer

ROOT = Path(__file__).resolve().parents[1]
# What a fresh clone holds; the build must not see (or write into) the developer's own venv and runs.
NOT_SOURCE = shutil.ignore_patterns(".venv", ".git", "runs", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".ruff_cache")


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def test_wheel_installs_and_runs_from_a_fresh_venv(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE, symlinks=True)
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
         str(source)], cwd=tmp_path)
    (wheel,) = dist.glob("distill-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "distill/recipes/demo.yaml" in names and "distill/data/demo/train.jsonl" in names
    assert {f"distill/view/static/{name}" for name in ("index.html", "app.js", "style.css")} <= names  # distill view
    assert "distill/data/demo/rl.yaml" in names  # `distill demo --rl`'s rl: section
    assert "distill/data/demo/compare.yaml" in names  # `distill demo --kd`'s arms

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    cwd=tmp_path).stdout.strip())
    dependencies = Path(typer.__file__).resolve().parents[1]  # the site-packages our dependencies live in
    (site / "zz_dependencies.pth").write_text(f"{dependencies}\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        cwd=tmp_path)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    where = run([str(python), "-c", "import distill; print(distill.__file__)"], cwd=outside, env=env).stdout
    assert Path(where.strip()).is_relative_to(site), f"distill was imported from {where}, not the wheel"

    distill = str(env_dir / "bin" / "distill")
    listing = run([distill, "recipes", "list"], cwd=outside, env=env).stdout
    assert {"demo", "demo-quick", "students/qwen2.5-math-1.5b-lora"} <= {line.split()[0] for line in
                                                                         listing.splitlines() if line.strip()}
    shown = run([distill, "recipes", "show", "demo", "--resolved"], cwd=outside, env=env).stdout
    assert "name: demo" in shown and "temperature: 0.6" in shown
    # The demo's problem files resolve inside the installed package, not in a checkout.
    script = "from distill.demo import demo_recipe; p = demo_recipe().generate.problems; print(p, p.exists())"
    data = run([str(python), "-c", script], cwd=outside, env=env).stdout
    problems, exists = data.split()
    assert Path(problems).is_relative_to(site) and exists == "True"
