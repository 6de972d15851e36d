"""A residual MLP conditioned on a diffusion time: the ε-net for vectors (2-D toys, flattened 8×8 digits).

Block: h ← h + Linear(Dropout(SiLU(Linear(SiLU(LayerNorm(h))) + emb(t)))), zero-initialised output so each
block starts as the identity (as in [IDDPM] Nichol & Dhariwal 2021's zero-init residual branches).
"""

from __future__ import annotations

from torch import Tensor, nn

from kexue.nn.time_embedding import timestep_embedding


class _Block(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.emb = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(width, width)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:  # (B, W), (B, W) → (B, W)
        u = self.fc1(nn.functional.silu(self.norm(h))) + self.emb(emb)
        return h + self.fc2(self.drop(nn.functional.silu(u)))


class ResMLP(nn.Module):
    """(x (B, D), t (B,)) → (B, D)."""

    def __init__(self, dim: int, width: int = 512, depth: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.width = width
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(_Block(width, dropout) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, dim))

    def features(self, x: Tensor, t: Tensor) -> Tensor:
        """The last hidden state (B, W) before the output head (NPR/SN heads read it on a frozen net)."""
        emb = self.time(timestep_embedding(t, self.width).to(x.dtype))  # (B, W)
        h = self.inp(x)  # (B, W)
        for block in self.blocks:
            h = block(h, emb)
        return h

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.out(self.features(x, t))  # (B, D)


__all__ = ["ResMLP"]
