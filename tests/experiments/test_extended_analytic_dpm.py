"""The Extended Analytic-DPM reproduction on a tiny ε-net: files, the rows contract, checks from rows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from helpers import run_contract
from kexue.experiments import extended_analytic_dpm as repro


def test_tiny_run_writes_the_contract(tiny_recipe, tmp_path):
    cfg = replace(
        repro.QUICK,
        recipe=tiny_recipe,
        ks=(2, 5),
        head_steps=10,
        head_batch=32,
        m_per_t=2,
        elbo_repeats=1,
        fid_k=3,
        fid_n=40,
    )
    on_disk = run_contract(repro.REPRODUCTION, cfg, tmp_path / "out")
    assert len(on_disk["checks"]) == 3
    rows = on_disk["rows"]
    elbo = [r for r in rows if "bpd" in r]
    fid = [r for r in rows if "fid" in r]
    assert len(elbo) + len(fid) == len(rows)
    assert {(r["method"], r["K"]) for r in elbo} == {
        (m, k) for m in ("analytic", "npr", "sn") for k in (2, 5)
    }
    assert all(r["trajectory"] == "even" and r["bpd"] > 0 for r in elbo)
    assert all(r["gap_vs_analytic"] == 0 for r in elbo if r["method"] == "analytic")
    assert {(r["method"], r["seed"]) for r in fid} == {
        (m, s) for m in ("analytic", "npr", "sn") for s in (0, 1)
    }
    assert all(r["K"] == 3 and r["kind"] == "ddpm" and r["n"] == 40 for r in fid)
    assert {r["method"] for r in on_disk["elbo_ablations"]} == {"npr_scalar", "sn_skip"}
    assert {r["method"] for r in on_disk["fid_ablations"]} == {"sn_skip"}
    assert {r["method"] for r in on_disk["fid_ddim_type"]} == {"analytic", "npr", "sn", "sn_skip", "ddim"}
    assert on_disk["fid_n"] == 40 and on_disk["trajectory"] == "even" and on_disk["systems"] == [31]
    assert set(on_disk["head_training"]["held_out_loss"]) == {"init", "trained (EMA)"}
    for name in ("report.md", "extended_analytic_dpm.png", "samples.png"):
        assert (tmp_path / "out" / name).is_file()
    assert len(list((tmp_path / "cache" / "ddpm").iterdir())) == 1  # the ε-net is cached, not retrained


def _rows(gaps: dict, fids: dict) -> list[dict]:
    elbo = [
        {"method": m, "K": k, "bpd": 4.0 - g, "bpd_se": 0.1, "gap_vs_analytic": g, "gap_se": se}
        for (m, k), (g, se) in gaps.items()
    ]
    return elbo + [{"method": m, "K": 10, "fid": f, "seed": s} for (m, s), f in fids.items()]


def test_checks_follow_the_rows():
    cfg = replace(repro.QUICK, ks=(10, 25, 50), fid_seeds=(0, 1))
    paper_like = {("analytic", k): (0.0, 0.0) for k in cfg.ks}
    paper_like.update({("npr", 10): (0.07, 0.01), ("npr", 25): (0.15, 0.01), ("npr", 50): (0.13, 0.01)})
    paper_like.update({("sn", k): (-25.0, 1.0) for k in cfg.ks})  # SN's NLL is poor: not part of the claim
    good_fid = {("analytic", 0): 34.3, ("analytic", 1): 34.1, ("sn", 0): 24.1, ("sn", 1): 24.3}
    good_fid.update({("npr", 0): 32.4, ("npr", 1): 32.2})
    checks, found = repro._checks(cfg, _rows(paper_like, good_fid))
    assert all(checks.values()), checks
    assert found["fid_analytic_minus_sn"] == pytest.approx([10.2, 9.8])
    names = list(checks)
    # NPR clearly worse at one K: the ≤ part fails
    worse = {**paper_like, ("npr", 50): (-0.05, 0.01)}
    assert not repro._checks(cfg, _rows(worse, good_fid))[0][names[0]]
    # NPR never significantly better (all gaps inside the noise): the non-vacuity part fails
    noise = {**paper_like, **{("npr", k): (0.01, 0.01) for k in cfg.ks}}
    checks = repro._checks(cfg, _rows(noise, good_fid))[0]
    assert checks[names[0]] and not checks[names[1]]
    # SN worse than Analytic on one seed
    bad_fid = {**good_fid, ("sn", 1): 35.0}
    assert not repro._checks(cfg, _rows(paper_like, bad_fid))[0][names[2]]


def test_config_refuses_bad_presets():
    with pytest.raises(ValueError, match="two sampling seeds"):
        replace(repro.QUICK, fid_seeds=(0,))
    with pytest.raises(ValueError, match="increasing step counts"):
        replace(repro.QUICK, ks=(25, 10))
    with pytest.raises(ValueError, match="m_per_t ≥ 2"):
        replace(repro.QUICK, m_per_t=1)
