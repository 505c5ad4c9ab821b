"""Native-resolution scoring: strip-wise bilinear upsampling equals F.interpolate; masks read alone, any form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from heritage_seg.core.geometry import fit_longest_side
from heritage_seg.core.protocol import Protocol
from heritage_seg.data.cache import build_cache, load_cache
from heritage_seg.data.readers import open_reader
from heritage_seg.evaluation.native import capped_mask, native_confusion
from heritage_seg.inference.upsample import upsampled_strips
from tests.helpers import make_folder, make_parquet_from_folder


@pytest.mark.parametrize(
    "in_size,out_size", [((8, 8), (37, 53)), ((16, 12), (16, 12)), ((32, 32), (7, 9)), ((5, 7), (100, 3))]
)
def test_strips_equal_whole_image_bilinear_interpolation(in_size, out_size):
    probs = torch.rand(4, *in_size, generator=torch.Generator().manual_seed(0))
    whole = F.interpolate(probs[None], size=out_size, mode="bilinear", align_corners=False)[0]
    strips = torch.cat([strip for _, strip in upsampled_strips(probs, *out_size, rows_per_strip=6)], dim=1)
    torch.testing.assert_close(strips, whole, atol=2e-6, rtol=0)


def test_native_confusion_counts_every_annotated_pixel_once():
    probs = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(1)).softmax(0)
    mask = torch.randint(0, 3, (50, 70), generator=torch.Generator().manual_seed(2))
    mask[:5] = 255
    cm = native_confusion(probs, mask, 3, 255, rows_per_strip=7)
    pred = F.interpolate(probs[None], size=(50, 70), mode="bilinear", align_corners=False)[0].argmax(0)
    valid = mask != 255
    expected = torch.bincount(mask[valid] * 3 + pred[valid], minlength=9).view(3, 3)
    assert torch.equal(cm, expected) and cm.sum() == 45 * 70


def test_cache_keeps_masks_as_stored_the_same_from_folder_and_parquet_and_capped(tmp_path, labels):
    folder = make_folder(tmp_path / "folder", n=4, size=40)
    parquet = make_parquet_from_folder(folder, tmp_path / "hub")
    caches = [
        load_cache(build_cache(open_reader(root), Protocol("squash", 32), labels, tmp_path / "cache"))
        for root in (folder, parquet)
    ]
    for i, sample_id in enumerate(caches[0].ids):
        j = caches[1].ids.index(sample_id)
        np.testing.assert_array_equal(caches[0].native_masks[i], caches[1].native_masks[j])
        assert caches[0].native_masks[i].shape == (40, 48)  # as stored, not the training square
        assert (caches[0].native_masks[i] == 255).sum() == 3 * 48  # the unannotated border stays ignored
        assert caches[0].masks[i].shape == (32, 32)
    assert capped_mask(caches[0].native_masks[0], 24).shape == (20, 24)
    assert fit_longest_side(6000, 4000, 1024) == (1024, 683) and fit_longest_side(300, 200, 1024) == (300, 200)
