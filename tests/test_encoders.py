"""Frozen visual encoders (bindlib.encoders): shapes, freezing, offline loading, controls, caching."""
from __future__ import annotations

import os
import socket
import time

import pytest
import torch

from bindlib.vision import encoders as E
from bindlib.core.io import CheckpointError

HUB = ("resnet152", "vit_b16", "dinov3", "dinov2")
NEEDS_CLASS = {"dinov3": pytest.mark.skipif(not E.dinov3_available(), reason="transformers has no DINOv3ViTModel")}
HUB_PARAMS = [pytest.param(n, marks=NEEDS_CLASS.get(n, ())) for n in HUB]


def images(n=2, size=224, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def tiny_dim(name, cfg):
    return cfg.hidden_sizes[2] if name == "resnet152" else cfg.hidden_size  # resnet152 uses stage 3


def assert_frozen(enc):
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()  # e.g. the parent model going into train mode must not unfreeze BatchNorm or dropout
    assert not enc.training and not any(m.training for m in enc.modules())
    x = images(1, enc.image_size).requires_grad_(True)
    assert not enc.encode(x).requires_grad


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty Hugging Face cache, no weights folder, and network use fails and is recorded.

    Recorded, because the hub client turns connection errors into its own exceptions.
    """
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv(E.WEIGHTS_ENV, raising=False)
    attempts = []

    def no_network(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    yield attempts
    assert attempts == [], "the code tried to reach the network"


# ---------------------------------------------------------------- hub encoders, offline
@pytest.mark.parametrize("name", HUB_PARAMS)
def test_hub_encoder_from_tiny_config_gives_196_tokens_and_is_frozen(name):
    cfg = E.tiny_config(name)
    enc = E.from_config(name, cfg)
    tokens = enc.encode(images(2, enc.image_size))
    assert enc.n_tokens() == 196
    assert tokens.shape == (2, 196, tiny_dim(name, cfg)) and enc.dim == tiny_dim(name, cfg)
    assert torch.isfinite(tokens).all()
    assert_frozen(enc)


def test_resnet_stage4_gives_7x7_tokens_of_the_last_width():
    cfg = E.tiny_config("resnet152")
    enc = E.from_config("resnet152", cfg, stage=4)
    assert enc.encode(images(1)).shape == (1, 49, cfg.hidden_sizes[3])


def test_inputs_of_another_size_are_resized_to_the_encoder_size():
    enc = E.from_config("vit_b16", E.tiny_config("vit_b16"))
    assert enc.encode(images(2, 64)).shape[1] == enc.n_tokens() == 196


@pytest.mark.parametrize("name", HUB_PARAMS)
def test_missing_hub_weights_fail_fast_with_download_instructions(name, offline):
    start = time.perf_counter()
    with pytest.raises(E.EncoderUnavailable) as err:
        E.get_encoder(name)
    assert time.perf_counter() - start < 2.0
    message = str(err.value)
    assert E.HUB_SPECS[name].hub_id in message and "download" in message and E.WEIGHTS_ENV in message


def test_weights_folder_without_a_model_is_reported(offline, tmp_path):
    with pytest.raises(E.EncoderUnavailable, match="download"):
        E.get_encoder("vit_b16", weights=tmp_path / "nothing_here")


@pytest.mark.parametrize("name", HUB_PARAMS)
def test_hub_encoder_loads_a_local_folder_and_the_weights_dir(name, offline, tmp_path, monkeypatch):
    reference = E.from_config(name, E.tiny_config(name), seed=1)
    reference.model.save_pretrained(tmp_path / name)
    x = images(1, reference.image_size)
    expected = reference.encode(x)

    enc = E.get_encoder(name, weights=tmp_path / name)
    assert enc.pretrained and torch.allclose(enc.encode(x), expected, atol=1e-5)
    assert_frozen(enc)

    monkeypatch.setenv(E.WEIGHTS_ENV, str(tmp_path))
    assert torch.allclose(E.get_encoder(name).encode(x), expected, atol=1e-5)


def test_paper_encoders_use_dinov2_only_without_dinov3():
    names = E.paper_encoders()
    assert names[:2] == ("resnet152", "vit_b16")
    assert names[2] == ("dinov3" if E.dinov3_available() else "dinov2")


def test_unknown_encoder_name_lists_the_allowed_ones():
    with pytest.raises(ValueError) as err:
        E.get_encoder("resnet50")
    assert all(name in str(err.value) for name in E.ENCODERS)
    assert set(E.ENCODERS) == {*HUB, "random_cnn", "pixels", "project_cnn", "project_vit", "project_cnn_grid"}


# ---------------------------------------------------------------- controls
def test_random_cnn_gives_196_tokens_and_is_deterministic():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = E.get_encoder("random_cnn"), E.get_encoder("random_cnn")
    assert torch.equal(torch.rand(1), before)  # building it left the global random stream alone
    x = images(2)
    ta = a.encode(x)
    assert ta.shape == (2, 196, a.dim) and a.n_tokens(224) == 196
    assert torch.equal(ta, b.encode(x))
    assert not torch.equal(ta, E.get_encoder("random_cnn", seed=1).encode(x))
    assert_frozen(a)


def test_random_cnn_on_a_smaller_canvas_keeps_196_tokens():
    enc = E.get_encoder("random_cnn", image_size=112, patch=8)
    assert enc.encode(images(1, 112)).shape == (1, 196, enc.dim)


def test_pixels_are_lossless_patches():
    enc = E.get_encoder("pixels")
    x = images(2)
    tokens = enc.encode(x)
    assert tokens.shape == (2, (224 // 16) ** 2, 3 * 16 * 16) and enc.dim == 768
    assert torch.equal(E.unpatchify(tokens, 16), x)
    assert torch.equal(tokens[0, 1], x[0, :, :16, 16:32].reshape(-1))  # token 1 is the second patch of row 0
    assert_frozen(enc)


# ---------------------------------------------------------------- project encoders
@pytest.mark.parametrize("name", ["project_cnn", "project_vit"])
def test_project_encoder_round_trip_verifies_sha256(name, tmp_path):
    enc = E.from_config(name, E.tiny_config(name), seed=3)
    path = E.save_project_encoder(enc, name, tmp_path / name, meta={"note": "test"})
    loaded = E.get_encoder(name, weights=path)
    x = images(1)
    assert torch.equal(loaded.encode(x), enc.encode(x)) and loaded.pretrained
    assert loaded.weights_id.startswith("sha256:")
    assert_frozen(loaded)

    weights = path / "encoder.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="sha256"):
        E.load_project_encoder(name, path)


def test_project_encoder_default_architectures():
    # the committed (cpu-profile) architectures: 112 px canvas, 7 x 7 = 49 tokens of width 128
    cnn, vit = E.get_encoder("project_cnn"), E.get_encoder("project_vit")
    assert (cnn.n_tokens(), vit.n_tokens(), cnn.dim, vit.dim) == (49, 49, 128, 128)
    assert len(vit.net.blocks) == 4 and not cnn.pretrained
    # the paper-scale versions keep the paper's 196 tokens at 224 px
    paper_cnn = E.project_encoder("project_cnn", E.project_config("project_cnn", "paper"), image_size=224)
    paper_vit = E.project_encoder("project_vit", E.project_config("project_vit", "paper"))
    assert (paper_cnn.n_tokens(), paper_vit.n_tokens()) == (196, 196)


def test_missing_project_encoder_says_how_to_make_it(tmp_path):
    with pytest.raises(E.EncoderUnavailable, match="pretrain-encoder --name project_cnn"):
        E.load_project_encoder("project_cnn", tmp_path / "absent")


def test_project_encoder_of_another_name_is_refused(tmp_path):
    path = E.save_project_encoder(E.from_config("project_cnn", E.tiny_config("project_cnn")), "project_cnn", tmp_path)
    with pytest.raises(CheckpointError, match="project_cnn"):
        E.load_project_encoder("project_vit", path)


