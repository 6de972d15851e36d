"""The README's Python example runs as written (with fewer steps)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_python_example_runs(tmp_path, monkeypatch):
    blocks = [b for b in _blocks() if "Trainer(" in b]
    assert blocks, "the README has no Trainer example"
    monkeypatch.chdir(tmp_path)
    code = blocks[0].replace("steps=2000", "steps=40").replace("every=500", "every=20")
    code = code.replace("warmup_linear(100, 2000)", "warmup_linear(5, 40)")
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert (tmp_path / "runs/net/model.safetensors").is_file()
    assert (tmp_path / "runs/net/best.safetensors").is_file()


def test_readme_diffusion_example_runs(tmp_path, monkeypatch):
    """The diffusion example, on a tiny stand-in for the cached digits ε-net (trained here in seconds)."""
    from kexue.diffusion.ddpm import DDPMConfig
    from kexue.experiments import pretrained_ddpm
    from kexue.train.trainer import TrainConfig

    blocks = [b for b in _blocks() if "kexue.diffusion" in b]
    assert blocks, "the README has no diffusion example"
    monkeypatch.setenv("KEXUE_CACHE", str(tmp_path))
    tiny = pretrained_ddpm.DDPMRecipe(
        "digits",
        DDPMConfig(shape=(1, 8, 8), width=32, depth=1),
        TrainConfig(steps=5, batch_size=32, progress=False),
    )
    monkeypatch.setitem(pretrained_ddpm.RECIPES, "digits", tiny)
    scope = {"__name__": "readme"}
    exec(compile(blocks[0], "README.md", "exec"), scope)
    assert scope["images"].shape == (16, 1, 8, 8) and scope["nelbo"].shape == (64,)
    assert scope["traj"].tolist()[:2] == [1, 112] and scope["traj"].tolist()[-1] == 1000
