"""kexue bench flows: the normflows wrapper is a proper density and the benchmark's JSON has its fields."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("normflows", reason="normflows is a bench extra (pip install 'kexue[bench]')")

from kexue.bench.flows import NormflowsGlow


def test_wrapper_includes_the_logit_jacobian():
    """normflows' log p(y) = its flow's log p(x) at x = logit(α + (1 − 2α)y) + log|dx/dy|, the same change of
    variables kexue's preprocessing makes (kexue's side is checked against autograd in tests/flows)."""
    import normflows as nf

    from kexue.flows.preprocess import to_flow_space

    torch.manual_seed(0)
    m = NormflowsGlow((1, 8, 8), 17, L=2, K=1, hidden=8, logit=0.05).double()
    bare = nf.MultiscaleFlow(
        list(m.flow.q0),
        [list(f) for f in m.flow.flows],
        list(m.flow.merges),
        transform=None,
        class_cond=False,
    )
    y = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.98 + 0.01
    x, logdet = to_flow_space(y, 0.05)
    with torch.no_grad():
        assert torch.allclose(m.log_prob(y), bare.log_prob(x, None) + logdet, atol=1e-8)
    out = m.float().loss((torch.rand(8, 1, 8, 8).mul(16).round() / 16,))
    assert math.isfinite(out["loss"].item()) and out["bpd"].item() > 0


def test_benchmark_json_fields(monkeypatch):
    from kexue.bench import flows as bench
    from kexue.experiments import flows as exp  # run() imports train_for_seconds from here: shorten it

    original = exp.train_for_seconds
    monkeypatch.setattr(exp, "train_for_seconds", lambda *a, **kw: original(*a, **{**kw, "seconds": 1.0}))
    result = bench.run(quick=True)
    for key in ("kexue_bpd", "normflows_bpd", "kexue_seconds_per_epoch", "normflows_seconds_per_epoch"):
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["goal_met"] == (result["kexue_bpd"] <= result["normflows_bpd"])
