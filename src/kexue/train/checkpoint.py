"""Checkpoints: tensors in safetensors, everything else in JSON, written atomically; nothing is unpickled.

A checkpoint is a directory `step-00001000/` holding `state.safetensors` and `state.json`. It is written
under a temporary name, each file flushed and fsync'ed, then renamed into place in one `rename` — so a
process killed at any instant leaves either the previous complete checkpoints or the new one, never a
half-written one; leftovers named `.tmp-*` are swept on the next save. The newest K are kept.

Nested state (an optimizer's state_dict, a scheduler's, a callback's) is split by `flatten_state` into
a JSON tree and a flat dict of tensors, and put back together by `unflatten_state`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from kexue.errors import CheckpointError

STEP_DIR = re.compile(r"^step-(\d{8,})$")
TENSORS, META = "state.safetensors", "state.json"
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read the process umask once: temporary files are created 0600, final ones follow it


# ---------------------------------------------------------------------------------------------- codec
def flatten_state(obj: Any, prefix: str, tensors: dict[str, Tensor]) -> Any:
    """Replace every tensor in a nested dict/list/tuple by {"__tensor__": key}, storing it in `tensors`."""
    if isinstance(obj, Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) for k in obj):
            raise TypeError(f"state key types at {prefix!r} must be str or int")
        items = [[k, flatten_state(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]
        if all(isinstance(k, str) for k in obj):
            return dict(items)
        return {"__dict__": items}  # int keys (optimizer state is keyed by parameter index)
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(
        f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint (tensors and JSON only)"
    )


def unflatten_state(obj: Any, tensors: dict[str, Tensor]) -> Any:
    """Inverse of `flatten_state`."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__tuple__"}:
            return tuple(unflatten_state(v, tensors) for v in obj["__tuple__"])
        if set(obj) == {"__dict__"}:
            return {k: unflatten_state(v, tensors) for k, v in obj["__dict__"]}
        return {k: unflatten_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


def _storable(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Contiguous CPU tensors with no two sharing storage (safetensors refuses shared or strided ones)."""
    seen: set[tuple[int, int]] = set()
    out = {}
    for k, t in tensors.items():
        t = t.detach().cpu()
        key = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else (0, id(t))
        out[k] = t.clone() if key in seen or not t.is_contiguous() else t
        seen.add(key)
    return out


# ------------------------------------------------------------------------------------- atomic files
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish_mode(path: Path, directory: bool = False) -> None:
    os.chmod(path, (0o777 if directory else 0o666) & ~_UMASK)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside `path`, fsync it, then rename it over `path`:
    readers see the old file or the complete new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        _fsync_file(tmp)
        _publish_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def build_directory_atomic(final: str | os.PathLike, build: Callable[[Path], None]) -> Path:
    """Fill a fresh temporary directory beside `final` with build(work), then move it into place by one
    rename (a reader sees the old directory, none, or the complete new one). On any error the temporary
    directory is removed and `final` is left as it was."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        build(work)
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def save_tensors_atomic(
    tensors: dict[str, Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> None:
    """Write a safetensors file atomically."""
    _write_atomic(path, lambda tmp: save_file(_storable(tensors), tmp, metadata=metadata))


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write a text file atomically (UTF-8, "\n" line ends on every platform)."""
    _write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline="\n"))


def write_json_atomic(obj: Any, path: str | os.PathLike) -> None:
    """Write a JSON file atomically (no NaN: strict JSON)."""
    write_text_atomic(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n", path)


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Read a safetensors file (never pickle), with a one-line error naming the file when it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; point at a run directory written by `kexue train`")
    try:
        return load_file(path, device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({e}); "
            "it may be truncated — use an earlier checkpoint or retrain"
        ) from None


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; point at a run directory written by `kexue train`")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); restore it or retrain") from None


# ------------------------------------------------------------------------------------- checkpoints
def read_run_meta(directory: str | os.PathLike, meta_name: str, fmt: str, version: int, command: str) -> dict:
    """The JSON description `meta_name` of a saved run directory, checked to be `fmt` version `version`.

    `command` names what writes such runs (e.g. "kexue poetry train"), for the one-line error otherwise.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is not a directory; give a run written by `{command}`")
    meta = read_json(directory / meta_name)
    if not isinstance(meta, dict) or meta.get("format") != fmt or meta.get("version") != version:
        raise CheckpointError(
            f"{directory / meta_name} is not a {fmt} v{version} file; give a `{command}` run"
        )
    return meta


def checkpoint_steps(directory: str | os.PathLike) -> list[int]:
    """Steps of the complete checkpoints in `directory`, ascending."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(
        int(m.group(1)) for p in directory.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir()
    )


def save_checkpoint(
    directory: str | os.PathLike, step: int, tensors: dict[str, Tensor], meta: dict, *, keep: int = 3
) -> Path:
    """Write checkpoint `step` atomically into `directory`, then keep only the newest `keep`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step-{step:08d}-", dir=directory))
    try:
        save_file(_storable(tensors), tmp / TENSORS, metadata={"format": "kexue-checkpoint"})
        _fsync_file(tmp / TENSORS)
        with open(tmp / META, "w") as f:
            # NaN/Inf allowed: a metric may be NaN, and only kexue (Python's json) reads this file
            json.dump({**meta, "step": step}, f, indent=1, sort_keys=True, allow_nan=True)
            f.flush()
            os.fsync(f.fileno())
        for p in (tmp / TENSORS, tmp / META):
            _publish_mode(p)
        _publish_mode(tmp, directory=True)
        _fsync_dir(tmp)
        old = None
        if final.exists():  # the same step again: move the old copy aside, never delete before replacing
            old = directory / f".tmp-old-step-{step:08d}-{os.getpid()}"
            os.rename(final, old)
        os.rename(tmp, final)
        _fsync_dir(directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for p in directory.glob(".tmp-step-*"):  # leftovers of processes killed mid-save
        shutil.rmtree(p, ignore_errors=True)
    steps = checkpoint_steps(directory)
    for old in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(directory / f"step-{old:08d}", ignore_errors=True)
    return final


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict]:
    """(tensors, meta) of one checkpoint directory."""
    path = Path(path)
    return load_tensors(path / TENSORS), read_json(path / META)


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint directory, or None when there is none."""
    steps = checkpoint_steps(directory)
    return Path(directory) / f"step-{steps[-1]:08d}" if steps else None
