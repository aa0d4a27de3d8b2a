"""Duplicate traces: exact (same normalized text) and near (MinHash Jaccard over word shingles, LSH)."""
from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np

from distill.config import DedupConfig

_SPACE = re.compile(r"\s+")
_TEMPLATES: dict[int, Any] = {}  # num_perm -> datasketch.MinHash holding the permutations


def trace_text(reasoning: str, answer: str) -> str:
    return f"{reasoning}\n{answer}"


def normalize(text: str) -> str:
    return _SPACE.sub(" ", text.lower()).strip()


def exact_hash(text: str) -> bytes:
    return hashlib.blake2b(normalize(text).encode(), digest_size=16).digest()


def signature(text: str, num_perm: int, shingle: int) -> np.ndarray:
    """MinHash of the text's word `shingle`-grams (the whole text when shorter), as uint32 hash values."""
    from datasketch import MinHash  # imports scipy: only where MinHash is used

    words = normalize(text).split(" ")
    grams = [" ".join(words[i:i + shingle]).encode() for i in range(max(1, len(words) - shingle + 1))]
    template = _TEMPLATES.get(num_perm)
    if template is None:  # building the permutations is most of a MinHash's setup cost: do it once
        template = _TEMPLATES[num_perm] = MinHash(num_perm=num_perm)
    minhash = MinHash(num_perm=num_perm, permutations=template.permutations, scheme=template.scheme)
    minhash.update_batch(grams)
    return minhash.hashvalues.astype(np.uint32)  # affine32 values: 4 bytes each is exact


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))


class Deduplicator:
    """Feed traces in order; each one that repeats an earlier kept trace is reported with that trace's key."""

    def __init__(self, config: DedupConfig):
        from datasketch import MinHashLSH

        self.config = config
        self.exact: dict[bytes, str] = {}
        self.lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm) if config.near else None
        self.signatures: dict[str, np.ndarray] = {}

    def seen(self, key: str, text: str, sig: np.ndarray | None) -> tuple[str, str] | None:
        """(check, detail) when `text` duplicates an earlier trace, else None (and remember it)."""
        if self.config.exact:
            digest = exact_hash(text)
            if digest in self.exact:
                return "dedup_exact", f"same text as {self.exact[digest]}"
            self.exact[digest] = key
        if self.lsh is not None and sig is not None:
            from datasketch import MinHash

            minhash = MinHash(num_perm=self.config.num_perm, hashvalues=sig, scheme="affine32")
            best, best_key = 0.0, None
            for other in self.lsh.query(minhash):
                similarity = jaccard(sig, self.signatures[other])
                if similarity > best:
                    best, best_key = similarity, other
            if best_key is not None and best >= self.config.threshold:
                return "dedup_near", f"Jaccard ~{best:.2f} with {best_key} (threshold {self.config.threshold})"
            self.lsh.insert(key, minhash)
            self.signatures[key] = sig
        return None
