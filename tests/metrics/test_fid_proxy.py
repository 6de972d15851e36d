"""The FID-proxy: trained once into the cache, reused, near its floor on real images, far on noise."""

from __future__ import annotations

import pytest
import torch

from kexue.errors import KexueError
from kexue.metrics import fid_proxy


@pytest.fixture(scope="module")
def digits_proxy(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("KEXUE_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield fid_proxy.FidProxy("digits")
    mp.undo()


def test_real_images_sit_at_the_floor_noise_far_above(digits_proxy, gen):
    floor = digits_proxy.floor(297, generator=gen)
    noise = digits_proxy(torch.rand(297, 1, 8, 8, generator=gen), generator=gen)
    assert floor["classes_covered"] == 10
    assert floor["fid_proxy"] < 0.05 * noise["fid_proxy"]
    assert floor["kid_proxy"] < 0.05 * noise["kid_proxy"]


def test_identical_sets_have_zero_distance(digits_proxy):
    out = digits_proxy(digits_proxy.real_test)
    assert abs(out["fid_proxy"]) < 1e-8


def test_collapsed_generator_covers_one_class(digits_proxy):
    ones = digits_proxy.real_test[digits_proxy.net(digits_proxy.real_test).argmax(-1) == 1]
    out = digits_proxy(ones.repeat(5, 1, 1, 1))
    assert out["classes_covered"] == 1 and out["class_kl_to_uniform"] > 2.0


def test_cached_net_is_reused_and_wrong_shapes_are_refused(digits_proxy, monkeypatch):
    net_file = fid_proxy.feature_net_dir("digits") / "model.safetensors"
    stamp = net_file.stat().st_mtime_ns
    fid_proxy.load_feature_net("digits", train_if_missing=False)
    assert net_file.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match=r"expects images of shape \(N, 1, 8, 8\)"):
        digits_proxy(torch.rand(4, 1, 28, 28))
    with pytest.raises(KexueError, match="not 'cifar'"):
        fid_proxy.load_feature_net("cifar")


def test_missing_net_without_training_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("KEXUE_CACHE", str(tmp_path))
    with pytest.raises(KexueError, match="kexue train classifier --data digits --fid-proxy"):
        fid_proxy.load_feature_net("digits", train_if_missing=False)
