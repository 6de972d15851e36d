"""Absolute position embeddings: sinusoidal [4765], learned, and the hierarchical decomposition [7947].

[4765] 《Attention is All You Need》浅读, kexue.fm/archives/4765 (Vaswani et al., NeurIPS 2017, §3.5)
[7947] 层次分解位置编码，让BERT可以处理超长文本, kexue.fm/archives/7947 (equations in order: eq. 1 the
decomposition, eq. 2 its basis).

- Sinusoidal [4765] eq. 9: PE_{2i}(p) = sin(p/10000^{2i/d}), PE_{2i+1}(p) = cos(p/10000^{2i/d}): sin at even
  and cos at odd feature indices, the paper's interleaved order (any fixed order is equivalent once the table
  is added to embeddings and followed by a linear map, as the post notes)          → `sinusoidal_positions`
- Learned: a trainable (n, d) table, valid for positions 0 … n − 1                 → `LearnedPositions`
- Hierarchical [7947]: from trained p_1 … p_n, position (i − 1)·n + j (1-based i, j ≤ n) gets
      q_{(i−1)n+j} = α·u_i + (1 − α)·u_j,   u_i = (p_i − α·p_1)/(1 − α)         (eq. 1, eq. 2)
  so q_j = p_j for j ≤ n and n² positions exist. α ∈ (0, 1), α ≠ 0.5 (else (i, j) and (j, i) collide);
  Su's default α = 0.4                                                        → `HierarchicalPositions`

Notation box (1-based post → 0-based code): position `pos` = (i − 1)·n + (j − 1), i.e. i − 1 = pos // n and
j − 1 = pos % n; p_1 is `table[0]`. Substituting eq. 2 into eq. 1 gives the form the code uses,
      q = p_j + α/(1 − α)·(p_i − p_1),
which is the same vector in exact arithmetic and makes q_j = p_j hold *bitwise* for pos < n (p_1 − p_1 = 0).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from kexue.errors import KexueError


def _check_positions(positions: Tensor, limit: int, who: str) -> None:
    """Integer positions in [0, limit), else a KexueError naming the caller and the fix."""
    if positions.dtype.is_floating_point or positions.dtype.is_complex or positions.dtype == torch.bool:
        raise KexueError(f"{who} needs integer positions (a LongTensor), got dtype {positions.dtype}")
    if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= limit):
        raise KexueError(
            f"{who} covers positions 0 … {limit - 1}, got positions in [{int(positions.min())}, "
            f"{int(positions.max())}] (use a longer table, a hierarchical extension, or shorter inputs)"
        )


def sinusoidal_embedding(
    positions: Tensor, dim: int, *, base: float = 10000.0, dtype=torch.float32
) -> Tensor:
    """PE(p) of [4765] eq. 9 for arbitrary (integer or float) positions: shape positions.shape + (dim,).

    Angles p/base^{2i/d} are formed in float64 and cast at the end (float32 angles lose digits at large p).
    An odd `dim` drops the last cosine.
    """
    if dim <= 0:
        raise KexueError(f"sinusoidal positions need a positive feature size, got dim={dim}")
    inv = base ** (-torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim)  # (⌈d/2⌉,)
    phi = positions.to(torch.float64)[..., None] * inv  # (..., ⌈d/2⌉)
    pe = torch.stack((phi.sin(), phi.cos()), dim=-1).flatten(-2)  # (..., 2⌈d/2⌉): sin even, cos odd [4765]
    return pe[..., :dim].to(dtype)


def sinusoidal_positions(
    n: int, dim: int, *, base: float = 10000.0, dtype=torch.float32, device=None
) -> Tensor:
    """The (n, dim) sinusoidal table of [4765] eq. 9 for positions 0 … n − 1."""
    if n < 0:
        raise KexueError(f"sinusoidal_positions needs n ≥ 0 positions, got n={n}")
    return sinusoidal_embedding(torch.arange(n, device=device), dim, base=base, dtype=dtype)  # (n, dim)


class LearnedPositions(nn.Module):
    """A trainable table of `max_len` position vectors (BERT-style); `forward(positions) -> (..., dim)`.

    Initialised N(0, std²) from `generator` (std = 0.02 as in BERT), or copied from `init` (max_len, dim).
    Positions ≥ max_len are an error, not a silent wrap: extend with `HierarchicalPositions(self)` or
    `expand_learned_positions`.
    """

    def __init__(
        self,
        max_len: int,
        dim: int,
        *,
        std: float = 0.02,  # BERT's initializer_range
        generator: torch.Generator | None = None,
        init: Tensor | None = None,  # a table to start from instead of random rows
        device=None,
        dtype=None,
    ):
        super().__init__()
        if max_len <= 0 or dim <= 0:
            raise KexueError(
                f"LearnedPositions needs max_len > 0 and dim > 0, got max_len={max_len}, dim={dim}"
            )
        if init is not None:
            if tuple(init.shape) != (max_len, dim):
                raise KexueError(f"LearnedPositions init must be ({max_len}, {dim}), got {tuple(init.shape)}")
            self.weight = nn.Parameter(init.detach().to(device=device, dtype=dtype, copy=True))  # (n, D)
        else:
            self.weight = nn.Parameter(torch.empty(max_len, dim, device=device, dtype=dtype))  # (n, D)
            nn.init.normal_(self.weight, 0.0, std, generator=generator)

    @property
    def max_len(self) -> int:
        return self.weight.shape[0]

    @property
    def dim(self) -> int:
        return self.weight.shape[1]

    def forward(self, positions: Tensor) -> Tensor:
        _check_positions(positions, self.max_len, "LearnedPositions")
        return self.weight[positions.to(self.weight.device)]  # (..., D)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, dim={self.dim}"


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0 or math.isclose(alpha, 0.5):
        raise KexueError(
            f"hierarchical positions need 0 < α < 1 and α ≠ 0.5 (α = 0.5 makes positions (i, j) and (j, i) "
            f"collide [7947]), got α={alpha}; Su's default is 0.4"
        )


def hierarchical_embedding(table: Tensor, positions: Tensor, alpha: float = 0.4) -> Tensor:
    """q_pos of [7947] eq. 1–2 from the (n, D) table p for 0 ≤ pos < n²: shape positions.shape + (D,).

    Differentiable in `table`; q_pos = table[pos] bitwise for pos < n (see the module notation box).
    """
    _check_alpha(alpha)
    n = table.shape[0]
    _check_positions(positions, n * n, "HierarchicalPositions")
    positions = positions.to(table.device)
    i, j = positions // n, positions % n  # 0-based (i − 1, j − 1) of the post
    # [7947] eq. 1 with eq. 2 substituted: α·u_i + (1 − α)·u_j = p_j + α/(1 − α)·(p_i − p_1)
    return table[j] + (alpha / (1.0 - alpha)) * (table[i] - table[0])  # (..., D)


class HierarchicalPositions(nn.Module):
    """[7947]: a table of n positions (a tensor or a `LearnedPositions`) extended to n² positions.

    The parameters stay p_1 … p_n: a `LearnedPositions` or an `nn.Parameter` passed in is shared (registered
    here), so training the extension trains the original table; a plain tensor is kept as a buffer.
    `forward(positions) -> (..., D)`, equal to the table for positions < n.
    """

    def __init__(self, table: Tensor | LearnedPositions, alpha: float = 0.4):
        super().__init__()
        _check_alpha(alpha)
        self.alpha = float(alpha)
        if isinstance(table, LearnedPositions):
            self.base = table  # shared module: its weight is this module's parameter
        elif isinstance(table, nn.Parameter):
            self.table = table
        elif isinstance(table, Tensor):
            self.register_buffer("table", table)
        else:
            raise KexueError(
                f"HierarchicalPositions needs an (n, D) tensor or LearnedPositions, got {type(table)}"
            )
        if self._table().dim() != 2:
            raise KexueError(
                f"HierarchicalPositions needs an (n, D) table, got shape {tuple(self._table().shape)}"
            )

    def _table(self) -> Tensor:
        return self.base.weight if hasattr(self, "base") else self.table  # (n, D)

    @property
    def max_len(self) -> int:
        return self._table().shape[0] ** 2

    @property
    def dim(self) -> int:
        return self._table().shape[1]

    def forward(self, positions: Tensor) -> Tensor:
        return hierarchical_embedding(self._table(), positions, self.alpha)  # (..., D)

    def extra_repr(self) -> str:
        return f"n={self._table().shape[0]}, max_len={self.max_len}, alpha={self.alpha}"


def expand_learned_positions(
    learned: LearnedPositions, max_len: int, *, alpha: float = 0.4
) -> LearnedPositions:
    """A new, independent `LearnedPositions` of `max_len` ≤ n² rows initialised by [7947]'s decomposition.

    Rows 0 … n − 1 equal the trained table exactly; every row is then free to be fine-tuned on its own
    (unlike `HierarchicalPositions`, which keeps only the n original vectors as parameters).
    """
    n = learned.max_len
    if not n <= max_len <= n * n:
        raise KexueError(
            f"expand_learned_positions needs n ≤ max_len ≤ n² = {n * n} for a table of n = {n} rows, "
            f"got max_len={max_len}"
        )
    w = learned.weight.detach()
    rows = hierarchical_embedding(w, torch.arange(max_len, device=w.device), alpha)  # (max_len, D)
    return LearnedPositions(max_len, learned.dim, init=rows)
