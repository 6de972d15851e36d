"""kexue's RoPE against the peer users would otherwise pick: lucidrains' rotary-embedding-torch (a dev extra).

Both use the interleaved layout of RoFormer; the peer computes its angles in float32, so agreement is to
float32 precision at moderate positions, and with an offset (its KV-cache continuation) as well.
"""

from __future__ import annotations

import pytest
import torch

from kexue.nn.rope import apply_rope

rotary = pytest.importorskip("rotary_embedding_torch", reason="rotary-embedding-torch is a dev extra")


@pytest.mark.parametrize("offset", [0, 37])
@pytest.mark.parametrize("dim", [8, 64])
def test_apply_rope_equals_rotary_embedding_torch(dim: int, offset: int) -> None:
    g = torch.Generator().manual_seed(dim + offset)
    x = torch.randn(2, 3, 50, dim, generator=g)  # (B, H, T, D)
    peer = rotary.RotaryEmbedding(dim=dim).rotate_queries_or_keys(x, offset=offset)
    ours = apply_rope(x, torch.arange(50) + offset)
    torch.testing.assert_close(ours, peer, rtol=1e-5, atol=1e-5)
