"""Deterministic per-batch random generators.

Each batch of each attack at each ε gets its own generator, derived from the run's seed and the
batch's position. Results therefore do not depend on which batches ran before (so a resumed or a
sharded run draws the same random starts) and the global RNG is never used.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *path: int | str) -> int:
    """A 63-bit seed from ``seed`` and a path of integers or names (stable across runs and hosts)."""
    text = ":".join(str(p) for p in (seed, *path))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def generator_for(device: torch.device, seed: int, *path: int | str) -> torch.Generator:
    """A generator on ``device`` seeded with :func:`derive_seed`."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, *path))
    return gen
