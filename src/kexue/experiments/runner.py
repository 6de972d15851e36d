"""The reproduction contract: one module per post claim, one command to run it.

A reproduction module defines a `Reproduction`: its name, the post, the claim in words, the paper's or
post's own numbers, how the verdict is decided (`expectation`), and `quick`/`full` presets of its own
frozen config. Its `run(config, ctx)` trains and measures, and returns an `Outcome` whose `checks` are
booleans computed from the measured rows; `holds` is their conjunction — never set by hand.

`execute` writes into the output folder:
- metrics.json  {"name", "claim", "holds", "checks", "rows", "preset", "config", "post", "paper",
                 "expectation", "seconds", "git_sha", "kexue_version", "device", …extra}
- report.md     the claim, the measured tables beside the paper's numbers, the verdict, the figures
- *.png         figures
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import torch

import kexue


@dataclass(frozen=True)
class Context:
    """What a reproduction's run gets from the command line."""

    out: Path
    device: torch.device
    preset: str
    progress: bool = True

    def figure_path(self, name: str) -> Path:
        return self.out / name

    def say(self, message: str) -> None:
        """One line of progress on stderr (long runs report each finished piece)."""
        import sys

        print(f"kexue: {message}", file=sys.stderr, flush=True)


@dataclass
class Outcome:
    rows: list[dict[str, Any]]  # the measured table (one dict per row)
    checks: dict[str, bool]  # named parts of the claim, each computed from rows
    report: str  # markdown body: tables, discussion of what was seen
    figures: list[str] = field(default_factory=list)  # PNG file names inside ctx.out
    extra: dict[str, Any] = field(default_factory=dict)  # further metrics for metrics.json

    @property
    def holds(self) -> bool:
        return bool(self.checks) and all(self.checks.values())


@dataclass(frozen=True)
class Reproduction:
    name: str
    systems: tuple[int, ...]  # rows of the system map it reproduces
    post: str  # URL of the post whose claim it is
    claim: str  # the claim in words
    expectation: str  # how `checks` decide it (tolerances, source of the expectation)
    paper: str  # the post's / paper's own numbers (markdown)
    presets: Mapping[str, Any]  # "quick" and "full" → the run's frozen config
    run: Callable[[Any, Context], Outcome]


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _jsonable(config: Any) -> Any:
    return asdict(config) if is_dataclass(config) else config


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error over repeats (seeds); the error is NaN for a single value."""
    import math
    import statistics

    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return statistics.fmean(values), se


def markdown_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, *, digits: int = 4
) -> str:
    """A markdown table of dict rows (floats rounded to `digits` significant digits)."""
    if not rows:
        return "(no rows)"
    cols = list(columns or rows[0].keys())

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.{digits}g}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def execute(
    repro: Reproduction,
    *,
    preset: str,
    out: str | Path,
    device: torch.device,
    progress: bool = True,
    config: Any = None,
) -> dict[str, Any]:
    """Run `repro` with a preset (or an explicit config) and write metrics.json, report.md and figures."""
    if preset not in repro.presets:
        raise ValueError(f"{repro.name} has presets {sorted(repro.presets)}, not {preset!r}")
    config = config if config is not None else repro.presets[preset]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    outcome = repro.run(config, Context(out, device, preset, progress))
    seconds = time.perf_counter() - t0
    metrics = {
        "name": repro.name,
        "claim": repro.claim,
        "holds": outcome.holds,
        "checks": outcome.checks,
        "rows": outcome.rows,
        "preset": preset,
        "config": _jsonable(config),
        "post": repro.post,
        "systems": list(repro.systems),
        "expectation": repro.expectation,
        "paper": repro.paper,
        "seconds": round(seconds, 1),
        "git_sha": git_sha(),
        "kexue_version": kexue.__version__,
        "torch_version": torch.__version__,
        "device": str(device),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        **outcome.extra,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=True) + "\n")
    (out / "report.md").write_text(_report(repro, outcome, preset, seconds, config))
    return metrics


def _report(repro: Reproduction, outcome: Outcome, preset: str, seconds: float, config: Any) -> str:
    verdict = "**The claim holds.**" if outcome.holds else "**The claim does not hold in this run.**"
    checks = "\n".join(f"- {'✓' if ok else '✗'} {name}" for name, ok in outcome.checks.items())
    figures = "\n\n".join(f"![{f}]({f})" for f in outcome.figures)
    return (
        f"# Reproduction: {repro.name}\n\nPost: {repro.post}\n\n## Claim\n\n{repro.claim}\n\n"
        f"## Verdict\n\n{verdict}\n\n{checks}\n\nHow it is decided: {repro.expectation}\n\n"
        f"## Measured ({preset} preset, {seconds:.0f} s)\n\n{outcome.report}\n\n"
        f"## The post's / paper's numbers\n\n{repro.paper}\n\n"
        + (f"## Figures\n\n{figures}\n\n" if figures else "")
        + f"## Configuration\n\n```json\n{json.dumps(_jsonable(config), indent=2)}\n```\n"
        + f"\nRe-run: `kexue reproduce {repro.name}{' --quick' if preset == 'quick' else ''}`\n"
    )
