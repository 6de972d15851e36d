"""The README's Python example runs as written (with fewer steps)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)
    code = blocks[0].replace("steps=2000", "steps=40").replace("every=500", "every=20")
    code = code.replace("warmup_linear(100, 2000)", "warmup_linear(5, 40)")
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert (tmp_path / "runs/net/model.safetensors").is_file()
    assert (tmp_path / "runs/net/best.safetensors").is_file()
