"""`kexue bench attention`: time and peak memory of causal attention against the sequence length n.

[6853] 为节约而生：从标准Attention到稀疏Attention (kexue.fm/archives/6853); [Child] Child et al., Sparse
Transformers, arXiv 1904.10509; [9844] VQ一下Key (kexue.fm/archives/9844); [TVQ] Lingle, Transformer-VQ, ICLR
2024.

Methods (all causal self-attention, forward pass under `torch.inference_mode`, float32, B = 1, H = 4 heads,
D = 64, inputs drawn once per n from a seeded generator):
  sdpa           `F.scaled_dot_product_attention(is_causal=True)`, the raw fused kernel (O(n²) time)
  dense          `kexue.nn.attention.attention(causal=True)`, kexue's wrapper around it
  dense-masked   `attention` with a band mask |i − j| ≤ 128: Local computed the naive way ([6853]: correct,
                 but no faster than dense; the n×n mask is built outside the clock); n ≤ 8192 only
  local          `kexue.nn.sparse_attention.local_attention`, window 128, block-wise (O(n·w))
  strided        `strided_attention`, [Child]'s merged strided head with stride l = round(√n) (O(n√n))
  vq             `kexue.nn.vq_attention.vq_attention_linear`, a random codebook of c = `codebook_size` codes
                 per head (default 512, Transformer-VQ's S), block 128, given the codes (the attention
                 itself, O(n·(c + 2l)))
  vq+quantize    the same plus `quantize(k, codebook)` (nearest codeword, O(n·c·D)) inside the clock

Timing: `threads` (default os.cpu_count()) pinned with `torch.set_num_threads` and reported (restored
afterwards); one warm-up call per method, then `repeats` (≥ 5) rounds that call every method once in turn
(so that the machine's load changes hit all methods alike), and the median per method; CUDA is
synchronised around each call.
Peak memory (`peak_mb`): the most bytes held by tensors allocated during one call (its scratch and its output)
above what was allocated before it — on CUDA `torch.cuda.max_memory_allocated` after a reset, on CPU the
same quantity from the allocation and free events of `torch.profiler` (profile_memory=True) summed in time
order. Memory that kernels obtain outside torch's allocator (BLAS/oneDNN scratch) is not counted on CPU. It
is a separate, untimed call.

Result: "rows" (one per method × n: method, n, ms, peak_mb); "slopes" per method and, by name,
"local_slope" and "vq_slope": least-squares slopes of log ms against log n over n ≥ `slope_min_n` (2048;
goal ≤ 1.1); "vq_speedup_16k": sdpa ms / vq ms at n = 16384, or at the largest n both ran when 16384 is not in
the lengths (quick mode; "vq_speedup_n" names it; goal ≥ 6); "dense_overhead": the median over n of dense ms /
sdpa ms (goal ≤ 1.05); "vq_max_abs_error_vs_quadratic": max |vq_attention_linear − vq_attention_quadratic|
over the same quantised keys in float32 at n = "vq_error_n" (the largest n ≤ 4096); "goals" (each goal met or
not); plus the configuration, threads and device. Quick: n = 1k … 8k (7 lengths, 5 of them ≥ 2k); full:
1k … 32k (powers of two). Timings on a shared machine are inflated by its load.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from kexue.errors import KexueError

LENGTHS_QUICK = (1024, 1536, 2048, 3072, 4096, 6144, 8192)
LENGTHS_FULL = (1024, 2048, 4096, 8192, 16384, 32768)
HEADS, HEAD_DIM = 4, 64
WINDOW = 128  # the local window, as in reference/transformer.md §2.4
CODES, VQ_BLOCK = 512, 128  # Transformer-VQ's codebook size S and block length l ([TVQ] experiments)
MASKED_MAX_N = 8192  # the n×n band mask and its scores grow as n²: stop there
VQ_ERROR_MAX_N = 4096
GOALS = {"vq_speedup_16k": 6.0, "local_slope": 1.1, "vq_slope": 1.1, "dense_overhead": 1.05}
Case = Callable[[], Tensor]


# ------------------------------------------------------------------------------------ measurement
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(cases: dict[str, Case], device: torch.device, repeats: int) -> dict[str, float]:
    """Median wall time per case in milliseconds: one warm-up call each, then `repeats` rounds that call every
    case once in turn, so that a change in the machine's load hits all cases alike (a fairer ratio)."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():
        fn()
    for _ in range(repeats):
        for name, fn in cases.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


@contextlib.contextmanager
def _quiet_fd2() -> Iterator[None]:
    """Silence the C++ profiler's start/stop lines on file descriptor 2 (Python's sys.stderr is kept)."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def peak_bytes(fn: Case, device: torch.device) -> int | None:
    """Peak bytes held by tensors allocated during fn() (its scratch and its output), above the start.

    CUDA: the caching allocator's peak counter. CPU: torch.profiler's allocation events (+bytes) and free
    events (−bytes) summed in time order. Other devices: None.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        out = fn()
        torch.cuda.synchronize(device)
        del out
        return torch.cuda.max_memory_allocated(device) - base
    if device.type != "cpu":
        return None
    activities = [torch.profiler.ProfilerActivity.CPU]
    with _quiet_fd2(), torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        out = fn()  # held until the profile closes: the output counts towards the peak
    del out
    events = sorted(
        ((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
        key=lambda t: t[0],
    )
    held = peak = 0
    for _, nbytes in events:
        held += nbytes
        peak = max(peak, held)
    return peak


def loglog_slope(ns: list[int], ms: list[float]) -> float | None:
    """Least-squares slope of log ms against log n; None with fewer than two points."""
    if len(ns) < 2:
        return None
    x, y = [math.log(n) for n in ns], [math.log(t) for t in ms]
    mx, my = statistics.fmean(x), statistics.fmean(y)
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)


# ------------------------------------------------------------------------------------------ cases
def _cases(n: int, device: torch.device, seed: int, codes: int) -> dict[str, Case | None]:
    """The zero-argument forward calls at length n, inputs prepared outside the clock (None: skipped)."""
    from kexue.nn.attention import attention, window_mask
    from kexue.nn.sparse_attention import local_attention, strided_attention
    from kexue.nn.vq_attention import quantize, vq_attention_linear

    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, HEADS, n, HEAD_DIM, generator=g).to(device) for _ in range(3))  # (B, H, T, D)
    codebook = torch.randn(HEADS, codes, HEAD_DIM, generator=g).to(device)  # (H, c, D)
    _, z = quantize(k, codebook)  # (B, H, T)
    band = window_mask(n, n, WINDOW, causal=True, device=device) if n <= MASKED_MAX_N else None  # (T, T)
    stride = round(math.sqrt(n))
    return {
        "sdpa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "dense": lambda: attention(q, k, v, causal=True),
        "dense-masked": None if band is None else (lambda: attention(q, k, v, mask=band)),
        "local": lambda: local_attention(q, k, v, window=WINDOW, causal=True),
        "strided": lambda: strided_attention(q, k, v, stride=stride),
        "vq": lambda: vq_attention_linear(q, z, codebook, v, causal=True, block_size=VQ_BLOCK),
        "vq+quantize": lambda: vq_attention_linear(
            q, quantize(k, codebook)[1], codebook, v, causal=True, block_size=VQ_BLOCK
        ),
    }


def vq_error(n: int, device: torch.device, seed: int, codes: int) -> float:
    """max |linear − quadratic| over the same quantised keys, float32, causal, at length n."""
    from kexue.nn.vq_attention import quantize, vq_attention_linear, vq_attention_quadratic

    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, HEADS, n, HEAD_DIM, generator=g).to(device) for _ in range(3))
    codebook = torch.randn(HEADS, codes, HEAD_DIM, generator=g).to(device)
    k_hat, z = quantize(k, codebook)
    with torch.inference_mode():
        lin = vq_attention_linear(q, z, codebook, v, causal=True, block_size=VQ_BLOCK)
        quad = vq_attention_quadratic(q, k_hat, v, causal=True)
    return (lin - quad).abs().max().item()


# ---------------------------------------------------------------------------------------- the run
def _summary(rows: list[dict], slope_min_n: int) -> dict:
    ms = {(r["method"], r["n"]): r["ms"] for r in rows}
    methods = list(dict.fromkeys(r["method"] for r in rows))
    slopes = {}
    for m in methods:
        ns = sorted(n for (mm, n) in ms if mm == m and n >= slope_min_n)
        slopes[m] = loglog_slope(ns, [ms[m, n] for n in ns])
    both = sorted(n for (m, n) in ms if m == "vq" and ("sdpa", n) in ms)
    n_vq = 16384 if 16384 in both else (max(both) if both else None)
    ns = sorted(n for (m, n) in ms if m == "sdpa" and ("dense", n) in ms)
    return {
        "slopes": slopes,
        "local_slope": slopes.get("local"),
        "vq_slope": slopes.get("vq"),
        "slope_points": {m: sum(1 for (mm, n) in ms if mm == m and n >= slope_min_n) for m in methods},
        "vq_speedup_16k": None if n_vq is None else ms["sdpa", n_vq] / ms["vq", n_vq],
        "vq_speedup_n": n_vq,
        "dense_overhead": statistics.median(ms["dense", n] / ms["sdpa", n] for n in ns) if ns else None,
    }


def run(
    *,
    quick: bool = False,
    device: torch.device | str | None = None,
    lengths: tuple[int, ...] | None = None,
    repeats: int = 5,
    threads: int | None = None,
    slope_min_n: int = 2048,
    seed: int = 0,
    codebook_size: int = CODES,
) -> dict:
    """Time and peak memory per method and length (module docstring); `lengths` overrides quick/full.

    No `data_dir`: the benchmark reads no data (the CLI then refuses --data-dir with a clear message)."""
    device = torch.device(device or "cpu")
    lengths = tuple(lengths or (LENGTHS_QUICK if quick else LENGTHS_FULL))
    if repeats < 1 or any(n < 1 for n in lengths):
        raise KexueError(f"bench attention: need repeats ≥ 1 and lengths ≥ 1, got {repeats}, {lengths}")
    threads = threads or os.cpu_count() or 1
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    try:
        for n in lengths:
            cases = {
                name: fn for name, fn in _cases(n, device, seed, codebook_size).items() if fn is not None
            }
            with torch.inference_mode():
                ms = median_ms(cases, device, repeats)
                peak = {name: peak_bytes(fn, device) for name, fn in cases.items()}
            for name in cases:
                mb = None if peak[name] is None else peak[name] / 2**20
                rows.append({"method": name, "n": n, "ms": ms[name], "peak_mb": mb})
        n_err = max((n for n in lengths if n <= VQ_ERROR_MAX_N), default=min(lengths))
        error = vq_error(n_err, device, seed, codebook_size)
    finally:
        torch.set_num_threads(before)
    result = {"rows": rows, **_summary(rows, slope_min_n)}
    result |= {"vq_max_abs_error_vs_quadratic": error, "vq_error_n": n_err}
    result["goals"] = {
        key: None
        if result[key] is None
        else (result[key] >= goal if key == "vq_speedup_16k" else result[key] <= goal)
        for key, goal in GOALS.items()
    }
    result["config"] = {
        "batch": 1,
        "heads": HEADS,
        "head_dim": HEAD_DIM,
        "dtype": "float32",
        "window": WINDOW,
        "strided_stride": "round(sqrt(n))",
        "vq_codebook": codebook_size,
        "vq_block": VQ_BLOCK,
        "repeats": repeats,
        "lengths": list(lengths),
        "slope_min_n": slope_min_n,
        "threads": threads,
        "device": str(device),
        "torch": torch.__version__,
        "memory": "torch.cuda.max_memory_allocated"
        if device.type == "cuda"
        else "torch.profiler memory events",
    }
    return result
