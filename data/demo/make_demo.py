"""Build the demo's problem sets: `python data/demo/make_demo.py` rewrites train.jsonl and eval.jsonl here.

Why these problems: the demo distils SmolLM2-135M-Instruct into itself, so the problems must sit where
a 135M model succeeds sometimes but not always (GSM8K is out of its reach, pass@1 ~0.02). One-step
multiplication word problems and two-digit additions are: measured with vLLM, pass@1 ~0.12-0.17 and
pass@8 ~0.5-0.7. That wide pass@1-to-pass@k gap is where rejection sampling pays: the model can already
solve most problems in some of its samples, and fine-tuning on the verified ones makes the right
behaviour the likely one.

The two splits share the task families but not their wording: every family has separate train and eval
templates (and the number pairs never repeat across splits), so the held-out score measures the skill,
not memorised sentences, and the filter's n-gram decontamination has nothing real to find.

Deterministic: a fixed seed and no dependency beyond the standard library, so the files are reproducible
byte for byte (a test checks that rerunning this script changes nothing).
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 20250122
HERE = Path(__file__).resolve().parent

# (container, item, owner-verb phrase) for the multiplication stories; plural nouns throughout.
MUL_THINGS = [
    ("boxes", "pencils"), ("bags", "apples"), ("trays", "muffins"), ("shelves", "books"),
    ("packs", "stickers"), ("crates", "oranges"), ("jars", "cookies"), ("rows", "chairs"),
    ("baskets", "eggs"), ("cartons", "juice bottles"), ("tables", "plates"), ("buses", "students"),
]
NAMES = ["Ava", "Ben", "Carla", "Dev", "Elena", "Farid", "Grace", "Hugo", "Iris", "Jamal", "Kofi",
         "Lena", "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara"]

MUL_TEMPLATES = {
    "train": [
        "{name} has {a} {container}. Each of the {container} holds {b} {item}. How many {item} does {name} have?",
        "There are {a} {container} with {b} {item} in each. How many {item} are there altogether?",
        "{name} buys {a} {container} of {item}, and every one of the {container} contains {b} {item}. "
        "How many {item} did {name} buy?",
    ],
    "eval": [
        "A store puts {b} {item} into each of {a} {container}. What is the total number of {item}?",
        "{name} fills {a} {container}, putting exactly {b} {item} in every one. Find the number of {item} {name} used.",
    ],
}
ADD_TEMPLATES = {
    "train": ["What is {a} + {b}?", "Compute {a} + {b}."],
    "eval": ["Calculate {a} + {b}.", "What is the sum of {a} and {b}?"],
}


def _pairs(rng: random.Random, low_a: int, high_a: int, low_b: int, high_b: int) -> list[tuple[int, int]]:
    pairs = [(a, b) for a in range(low_a, high_a + 1) for b in range(low_b, high_b + 1)]
    rng.shuffle(pairs)
    return pairs


def build(n_train: int = 320, n_eval: int = 96, seed: int = SEED) -> dict[str, list[dict]]:
    """Both splits, half multiplication stories and half additions each, interleaved so any prefix mixes them."""
    rng = random.Random(seed)
    # Number pairs are dealt out once, so no pair appears in both splits.
    mul_pairs = iter(_pairs(rng, 3, 9, 11, 40))
    add_pairs = iter(_pairs(rng, 11, 89, 11, 89))
    splits: dict[str, list[dict]] = {}
    for split, size in (("eval", n_eval), ("train", n_train)):
        rows: list[dict] = []
        for i in range(size):
            if i % 2 == 0:
                a, b = next(mul_pairs)
                container, item = rng.choice(MUL_THINGS)
                text = rng.choice(MUL_TEMPLATES[split]).format(
                    name=rng.choice(NAMES), a=a, b=b, container=container, item=item)
                family, answer = "multiply", a * b
            else:
                a, b = next(add_pairs)
                text = rng.choice(ADD_TEMPLATES[split]).format(a=a, b=b)
                family, answer = "add", a + b
            rows.append({"id": f"demo-{split}-{i:04d}", "problem": text, "domain": "math",
                         "answer": str(answer), "source": "distill-demo", "meta": {"family": family,
                                                                                   "split": split}})
        splits[split] = rows
    return splits


def write(out_dir: Path = HERE, **kwargs) -> dict[str, Path]:
    paths = {}
    for split, rows in build(**kwargs).items():
        path = out_dir / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        paths[split] = path
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=HERE)
    args = parser.parse_args()
    for split, path in write(args.out_dir).items():
        print(f"{split}: {path}")
