"""Shapes, chunking and losses of the GAN building blocks (untrained, tiny)."""

from __future__ import annotations

import pytest
import torch

from anoncli.models.chunking import generate
from anoncli.models.discriminator import AlexNetDiscriminator
from anoncli.models.injections import GatedDilatedBottleneck, NoiseChannel, PCMelGANInjection
from anoncli.models.unet import UNet
from anoncli.training.gengan import soft_cross_entropy, synthetic_soft_target
from anoncli.training.pcmelgan import other_class

CHANNELS = [8, 16, 32, 64, 128]  # the papers' U-Net
SMALL = [4, 4, 8, 8, 16]  # same topology, cheaper for the slower tests


def generators(channels=CHANNELS):
    top = channels[-1]
    return {
        "gengan": (UNet(channels, NoiseChannel()), lambda f: {"noise": torch.randn(1, 1, 5, -(-f // 16))}),
        "pcmelgan": (
            UNet(channels, PCMelGANInjection(top, 5, 10, 2)),
            lambda f: {"z": torch.randn(1, 10), "label": torch.tensor([1])},
        ),
        "psegan": (
            UNet(channels, GatedDilatedBottleneck(top, 5, 7, width=16, hidden=8)),
            lambda f: {"label": torch.tensor([3])},
        ),
    }


@pytest.mark.parametrize("frames,channels", [(1, SMALL), (37, CHANNELS), (173, SMALL)])
def test_any_length_in_same_length_out(frames, channels):
    torch.manual_seed(0)
    for name, (generator, make_cond) in generators(channels).items():
        generator.eval()
        mel = torch.rand(1, 80, frames) * 2 - 1
        out = generate(generator, mel, make_cond(frames))
        assert out.shape == mel.shape, name
        assert out.abs().max() <= 1.0
        assert torch.isfinite(out).all()


def test_unet_refuses_unpadded_input():
    with pytest.raises(ValueError, match="multiples of 16"):
        UNet(CHANNELS)(torch.zeros(1, 1, 80, 37))


def test_residual_unet_starts_as_identity():
    generator = UNet(CHANNELS, NoiseChannel(), residual=True).eval()
    mel = torch.rand(1, 80, 48) * 1.6 - 0.8
    out = generate(generator, mel, {})
    assert torch.allclose(out, mel, atol=1e-5)


def test_chunked_equals_unchunked_on_a_short_input():
    torch.manual_seed(1)
    for name, (generator, make_cond) in generators(SMALL).items():
        generator.eval()
        frames = 200
        mel = torch.rand(1, 80, frames) * 2 - 1
        cond = make_cond(frames)
        whole = generate(generator, mel, cond, chunk_frames=4096)
        chunked = generate(generator, mel, cond, chunk_frames=64, overlap=32)
        assert chunked.shape == whole.shape
        assert (whole - chunked).abs().max() < 0.02, name
        assert not torch.equal(whole, torch.zeros_like(whole))


def test_discriminator_takes_any_length():
    disc = AlexNetDiscriminator(3, width=0.1).eval()
    for frames in (5, 64, 301):
        assert disc(torch.zeros(2, 1, 80, frames)).shape == (2, 3)


def test_gengan_soft_target_is_a_probability_distribution():
    generator = torch.Generator().manual_seed(0)
    for classes in (2, 7):
        target = synthetic_soft_target(4000, classes, generator)
        assert target.shape == (4000, classes)
        assert (target >= 0).all() and (target <= 1).all()
        assert torch.allclose(target.sum(dim=1), torch.ones(4000), atol=1e-5)
    two = synthetic_soft_target(20000, 2, generator)
    assert abs(float(two[:, 1].mean()) - 0.5) < 0.01
    # variance 0.05 (std 0.224) before clipping to [0, 1]; clipping shrinks it only a little
    assert 0.035 < float(two[:, 1].var()) < 0.055


def test_soft_cross_entropy_matches_class_index_ce_for_one_hot_targets():
    logits = torch.randn(6, 3)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    one_hot = torch.nn.functional.one_hot(labels, 3).float()
    assert torch.allclose(soft_cross_entropy(logits, one_hot), torch.nn.functional.cross_entropy(logits, labels))
    # minimised at the target distribution itself
    target = torch.tensor([[0.3, 0.7, 0.0]])
    at_target = soft_cross_entropy(torch.log(target + 1e-9), target)
    assert at_target < soft_cross_entropy(torch.zeros(1, 3), target)


def test_pcmelgan_other_class_never_equals_the_true_class():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(7).repeat(20)
    assert torch.equal(other_class(torch.tensor([0, 1]), 2, generator), torch.tensor([1, 0]))
    assert not (other_class(labels, 7, generator) == labels).any()


def test_speaker_matcher_is_frozen_differentiable_and_unit_norm():
    from anoncli.models.speaker import MelSpeakerEncoder, speaker_consistency_loss
    from anoncli.synthesis.mel import LogMel

    mel = LogMel()
    matcher = MelSpeakerEncoder(mel.filterbank, mel.sample_rate, mel.n_fft, mel.hop_length)
    assert not any(p.requires_grad for p in matcher.parameters())
    matcher.train()
    assert not matcher.training  # stays in eval mode inside a training parent
    t = torch.arange(16000) / 16000.0
    low = mel(torch.sin(2 * torch.pi * 120 * t).unsqueeze(0) * 0.3)
    high = mel(torch.sin(2 * torch.pi * 240 * t).unsqueeze(0) * 0.3 + 0.05 * torch.randn(1, 16000))
    emb = matcher(torch.cat([low, high]))
    assert emb.shape == (2, 256)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-4)
    generated = high.clone().requires_grad_(True)
    loss = speaker_consistency_loss(matcher, low, generated)
    loss.backward()
    assert generated.grad is not None and generated.grad.abs().sum() > 0
    assert float(speaker_consistency_loss(matcher, low, low)) < 1e-5
