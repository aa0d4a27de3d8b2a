"""Build the demo's problem sets: `python data/demo/make_demo.py` rewrites train.jsonl and eval.jsonl here.

Why these problems: the demo distils SmolLM2-135M-Instruct (the bundled 4-bit-derived checkpoint) into
itself, so the problems must sit where a 135M model succeeds sometimes but not always. GSM8K is out of
its reach (pass@1 ~0.02), and so are word problems and two-digit arithmetic (measured here with vLLM,
the R1 prompt and the project's verifier: pass@1 0.00-0.07). Bare arithmetic facts are in reach: with 4
samples of at most 128 tokens at T 0.6, times tables up to 12 x 12 gave pass@1 0.17-0.19 / pass@4
0.44-0.62, one-digit sums 0.23 / 0.69, and a teen number plus a digit 0.13 / 0.44. The model knows many
of these facts but often talks itself out of them (or runs out of tokens first); that wide
pass@1-to-pass@k gap is what rejection-sampling fine-tuning turns into pass@1.

Held out: the two splits never share a pair of numbers (in either order), so every eval problem is a
fact the student was not trained on; they share the phrasings, as GSM8K's train and test splits share
their style.

Deterministic: a fixed seed and the standard library only, so the files are reproducible byte for
byte (a test reruns this script and compares).
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 20250122
HERE = Path(__file__).resolve().parent

TIMES = ["What is {a} times {b}?", "What is {a} x {b}?", "Multiply {a} by {b}.", "What is {a} multiplied by {b}?",
         "Calculate {a} * {b}."]
PLUS = ["What is {a} + {b}?", "What is {a} plus {b}?", "Add {a} and {b}.", "Calculate {a} + {b}."]


def _split_pairs(rng: random.Random, pairs: list[tuple[int, int]], n_eval: int) -> tuple[list, list]:
    """Unordered pairs dealt to eval first, the rest to train: no fact is in both splits."""
    pairs = sorted(pairs)
    rng.shuffle(pairs)
    return pairs[:n_eval], pairs[n_eval:]


def _problems(rng: random.Random, pairs: list[tuple[int, int]], count: int, templates: list[str],
              family: str) -> list[tuple[str, str, str]]:
    """`count` distinct (phrasing, order) variants over `pairs`, cycling through the pairs evenly."""
    seen: set[str] = set()
    rows: list[tuple[str, str, str]] = []
    i = 0
    while len(rows) < count:
        a, b = pairs[i % len(pairs)]
        i += 1
        if rng.random() < 0.5:
            a, b = b, a
        text = rng.choice(templates).format(a=a, b=b)
        if text in seen:
            if i > 50 * count:
                raise ValueError(f"{family}: not enough distinct problems for {count} rows")
            continue
        seen.add(text)
        rows.append((text, str(a * b if family == "times" else a + b), family))
    return rows


def build(n_train: int = 192, n_eval: int = 64, seed: int = SEED) -> dict[str, list[dict]]:
    """Half times-table facts, half small sums, per split; interleaved so any prefix mixes both."""
    rng = random.Random(seed)
    times = [(a, b) for a in range(2, 13) for b in range(a, 13)]          # 66 facts up to 12 x 12
    plus = [(a, b) for a in range(2, 40) for b in range(2, 10) if a >= b]  # a digit added to 2..39
    times_eval, times_train = _split_pairs(rng, times, n_eval // 2)
    plus_eval, plus_train = _split_pairs(rng, plus, n_eval // 2)
    splits: dict[str, list[dict]] = {}
    for split, size, t_pairs, p_pairs in (("eval", n_eval, times_eval, plus_eval),
                                          ("train", n_train, times_train, plus_train)):
        mixed = []
        for left, right in zip(_problems(rng, t_pairs, size // 2, TIMES, "times"),
                               _problems(rng, p_pairs, size - size // 2, PLUS, "plus")):
            mixed += [left, right]
        splits[split] = [
            {"id": f"demo-{split}-{i:04d}", "problem": text, "domain": "math", "answer": answer,
             "source": "distill-demo", "meta": {"family": family, "split": split}}
            for i, (text, answer, family) in enumerate(mixed)]
    return splits


def write(out_dir: Path = HERE, **kwargs) -> dict[str, Path]:
    paths = {}
    for split, rows in build(**kwargs).items():
        path = Path(out_dir) / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        paths[split] = path
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=HERE)
    args = parser.parse_args()
    for split, path in write(args.out_dir).items():
        print(f"{split}: {path}")
