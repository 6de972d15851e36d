"""The DDIM reproduction end to end on a tiny ε-net: files, the rows contract, and checks from rows."""

from __future__ import annotations

from dataclasses import replace

from helpers import run_contract
from kexue.experiments import ddim as repro


def test_tiny_run_writes_the_contract(tiny_recipe, tmp_path):
    cfg = replace(repro.QUICK, recipe=tiny_recipe, steps=(2, 5), n=40, encode_steps=(2, 10, 100), encode_n=20)
    on_disk = run_contract(repro.REPRODUCTION, cfg, tmp_path / "out")
    rows = on_disk["rows"]
    assert len(rows) == 2 * 2 * 5 and {r["eta"] for r in rows} == {0.0, 0.2, 0.5, 1.0, "sigma_hat"}
    assert all({"eta", "steps", "fid"} <= set(r) for r in rows) and {r["steps"] for r in rows} == {2, 5}
    assert [r["steps"] for r in on_disk["encode_decode"]] == [2, 10, 100]
    assert on_disk["trajectory"] == "even" and on_disk["n"] == 40
    for name in ("report.md", "ddim_fid.png", "samples.png"):
        assert (tmp_path / "out" / name).is_file()
    # the cached net is reused, not retrained
    assert len(list((tmp_path / "cache" / "ddpm").iterdir())) == 1


def _rows(fids: dict) -> list[dict]:
    return [{"eta": v, "steps": k, "seed": s, "fid": f} for (v, k, s), f in fids.items()]


def test_checks_follow_the_rows():
    cfg = replace(repro.QUICK, steps=(10, 100), seeds=(0, 1))
    paper_like = {}
    for s, wobble in ((0, 0.1), (1, -0.1)):
        for v, f10, f100 in (
            (0.0, 13, 4.1),
            (0.2, 14, 4.2),
            (0.5, 16, 4.4),
            (1.0, 41, 5.7),
            ("sigma_hat", 367, 10),
        ):
            paper_like[v, 10, s], paper_like[v, 100, s] = f10 + wobble, f100 + wobble
    falling = [{"steps": k, "mse": m} for k, m in ((10, 0.014), (20, 0.0065), (50, 0.0023))]
    checks, _ = repro._checks(cfg, _rows(paper_like), falling)
    assert all(checks.values()), checks
    inverted = {key: (50 - f if key[0] != "sigma_hat" else f) for key, f in paper_like.items()}  # η=0 worst
    checks, _ = repro._checks(cfg, _rows(inverted), falling)
    assert not checks["fid_rises_with_eta_at_S10"]
    rising = [{"steps": k, "mse": m} for k, m in ((10, 0.01), (20, 0.02), (50, 0.001))]
    assert not repro._checks(cfg, _rows(paper_like), rising)[0]["encode_decode_error_falls_with_S"]
