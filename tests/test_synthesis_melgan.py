"""MelGAN generator: melgan-neurips state-dict layout, safe loading, the vocoder backend."""

import re

import pytest
import torch

from anoncli.errors import AnoncliError
from anoncli.synthesis import create_vocoder
from anoncli.synthesis.melgan import Generator, MultiScaleDiscriminator, load_melgan


@pytest.fixture(scope="module")
def public_layout_state():
    torch.manual_seed(0)
    return Generator().state_dict()


def test_keys_and_shapes_follow_melgan_neurips(public_layout_state):
    state = public_layout_state
    assert state["model.1.weight_g"].shape == (512, 1, 1)
    assert state["model.1.weight_v"].shape == (512, 80, 7)
    assert state["model.1.bias"].shape == (512,)
    # First upsampling: ConvTranspose 512 -> 256, kernel 16 (legacy weight norm: g over the input axis).
    assert state["model.3.weight_g"].shape == (512, 1, 1)
    assert state["model.3.weight_v"].shape == (512, 256, 16)
    # Residual blocks of the first stage: model.4-6, dilations 1, 3, 9.
    assert state["model.4.block.2.weight_v"].shape == (256, 256, 3)
    assert state["model.4.block.4.weight_v"].shape == (256, 256, 1)
    assert state["model.6.shortcut.weight_g"].shape == (256, 1, 1)
    # Last stages and the output conv 32 -> 1, kernel 7.
    assert state["model.18.weight_v"].shape == (64, 32, 4)
    assert state["model.24.weight_v"].shape == (1, 32, 7)
    for key in state:
        assert re.fullmatch(r"model\.\d+\.((block\.[24]|shortcut)\.)?(weight_g|weight_v|bias)", key), key
    assert not any("parametrizations" in k or k.endswith(".weight") for k in state)


def test_generator_upsamples_by_256():
    generator = Generator(ngf=4, n_residual_layers=1)
    out = generator(torch.randn(2, 80, 7))
    assert out.shape == (2, 1, 7 * 256)
    assert out.abs().max() <= 1.0


def test_weight_norm_reparametrisation():
    generator = Generator(ngf=4, n_residual_layers=1)
    conv = generator.model[1]
    norms = conv.weight.flatten(1).norm(dim=1)
    assert torch.allclose(norms, conv.weight_g.flatten(), atol=1e-6)


def test_state_dict_round_trip_with_weights_only(tmp_path, public_layout_state):
    path = tmp_path / "multi_speaker.pt"
    torch.save(public_layout_state, path)
    loaded = torch.load(path, weights_only=True)
    generator, rate = load_melgan(path)
    assert rate == 22050  # a bare state dict is taken as a public checkpoint
    for key, value in generator.state_dict().items():
        assert torch.equal(value, loaded[key])
    assert not generator.training


def test_load_our_checkpoint_with_its_rate_and_architecture(tmp_path):
    small = Generator(ngf=8, n_residual_layers=2)
    torch.save({"generator": small.state_dict(), "epoch": 3, "config": {"sample_rate": 16000}}, tmp_path / "c.pt")
    generator, rate = load_melgan(tmp_path / "c.pt")
    assert rate == 16000 and generator.ngf == 8 and generator.n_residual_layers == 2


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    with pytest.raises(AnoncliError, match="no such"):
        load_melgan(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(AnoncliError, match="cannot load"):
        load_melgan(tmp_path / "junk.pt")
    torch.save({"model.0.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(AnoncliError, match="not a MelGAN generator"):
        load_melgan(tmp_path / "other.pt")


def test_melgan_vocoder_at_its_own_rate_and_across_rates(tmp_path):
    torch.manual_seed(0)
    generator = Generator(ngf=4, n_residual_layers=1)
    torch.save({"generator": generator.state_dict(), "config": {"sample_rate": 16000}}, tmp_path / "same.pt")
    torch.save(generator.state_dict(), tmp_path / "public.pt")  # taken as 22.05 kHz
    wave = torch.randn(5000) * 0.1
    for name in ("same.pt", "public.pt"):
        vocoder = create_vocoder("melgan", 16000, checkpoint=str(tmp_path / name))
        out = vocoder.synthesize(vocoder.mel(wave[None])[0], wave)
        assert out.shape == wave.shape and torch.isfinite(out).all()
    assert vocoder.model_rate == 22050


def test_melgan_without_any_checkpoint_says_how_to_train(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_MODELS", str(tmp_path / "empty-store"))
    with pytest.raises(AnoncliError, match="anoncli train --method melgan"):
        create_vocoder("melgan", 16000)


def test_multiscale_discriminator_outputs_every_layer():
    discriminator = MultiScaleDiscriminator(scales=3, ndf=4, n_layers=2, downsampling=4, max_channels=32)
    outputs = discriminator(torch.randn(2, 1, 4096))
    assert len(outputs) == 3
    assert all(len(layers) == 2 + 3 for layers in outputs)
    # Each scale sees the wave average-pooled by 2 once more.
    assert outputs[1][0].shape[-1] == outputs[0][0].shape[-1] // 2


def test_chunked_generation_matches_one_pass():
    from anoncli.synthesis.melgan import generate

    torch.manual_seed(0)
    generator = Generator(ngf=4, n_residual_layers=3).eval()
    logmel = torch.randn(1, 80, 200) - 3
    with torch.no_grad():
        whole = generator(logmel)[:, 0]
    chunked = generate(generator, logmel, chunk_frames=48, context_frames=32)
    assert chunked.shape == whole.shape
    assert torch.allclose(chunked, whole, atol=1e-5)
