"""TTA inverses are exact and probabilities (not logits or labels) are averaged."""

from __future__ import annotations

import pytest
import torch

from heritage_seg.inference.tta import (
    DEFAULT_TTA,
    TRANSFORMS,
    predict_probabilities,
    resolve,
)


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_inverse_undoes_each_transform(name):
    x = torch.randn(2, 3, 32, 48)
    forward, inverse = TRANSFORMS[name]
    torch.testing.assert_close(inverse(forward(x)), x, rtol=0, atol=0)


def _position_dependent_model():
    """Not flip- or rotation-invariant: logits depend on absolute position."""
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    ramp = lambda x: torch.linspace(0, 3, x.shape[-1]).view(1, 1, 1, -1)  # noqa: E731
    return lambda x: conv(x) + ramp(x) * torch.arange(4).view(1, -1, 1, 1)


def test_identity_only_gives_the_model_own_prediction():
    model, x = _position_dependent_model(), torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(predict_probabilities(model, x, ("identity",)), model(x).softmax(1))


@pytest.mark.parametrize("name", ["hflip", "vflip", "rot90"])
def test_each_view_is_mapped_back_to_the_original_pixels(name):
    """For a model that is equivariant by construction, every view mapped back equals the identity view."""
    conv = torch.nn.Conv2d(3, 4, 1)  # 1x1 conv: commutes with flips and rotations
    x = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(predict_probabilities(conv, x, (name,)), conv(x).softmax(1))


def test_probabilities_are_averaged():
    model, x = _position_dependent_model(), torch.randn(1, 3, 16, 16)
    expected = sum(TRANSFORMS[n][1](model(TRANSFORMS[n][0](x)).softmax(1)) for n in DEFAULT_TTA) / 4
    out = predict_probabilities(model, x, DEFAULT_TTA)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out.sum(1), torch.ones(1, 16, 16))


def test_resolve():
    assert resolve(True) == DEFAULT_TTA and resolve(False) == ("identity",)
    with pytest.raises(ValueError, match="unknown transform"):
        resolve(["spin"])
