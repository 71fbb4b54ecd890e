"""Batched crops (roi_align) and their inverse (paste)."""

import pytest
import torch

from rlcv.models.crops import crop, full_boxes, paste


def test_crop_reads_the_box_region():
    img = torch.zeros(2, 1, 40, 60)
    img[0, 0, 10:20, 30:50] = 1.0
    img[1, 0, :, :] = torch.arange(60.0)[None, :]
    boxes = torch.tensor([[30.0, 10.0, 50.0, 20.0], [0.0, 0.0, 60.0, 40.0]])
    out = crop(img, boxes, 8)
    assert out.shape == (2, 1, 8, 8)
    torch.testing.assert_close(out[0, :, 1:-1, 1:-1], torch.ones(1, 6, 6))
    assert out[0].min() > 0.85   # bilinear samples at the box edge blend with outside
    # a whole-image crop samples x at the centres of 8 equal bins
    torch.testing.assert_close(out[1, 0, 0], torch.arange(8.0) * 7.5 + 3.25)


def test_paste_inverts_crop_inside_box():
    mask = torch.zeros(1, 48, 64)
    mask[0, 12:36, 20:44] = 1.0
    box = torch.tensor([[16.0, 8.0, 48.0, 40.0]])
    c = crop(mask[:, None], box, 32)[:, 0]
    back = paste(c, box, 48, 64) > 0.5
    assert torch.equal(back, mask.bool())


def test_paste_is_zero_outside_box():
    out = paste(torch.ones(1, 8, 8), torch.tensor([[4.0, 4.0, 12.0, 12.0]]), 20, 20)
    assert out[0, 4:12, 4:12].min() > 0.99
    assert out[0, :3].abs().max() == 0 and out[0, :, 13:].abs().max() == 0


def test_full_boxes():
    assert full_boxes(2, 10, 20).tolist() == [[0, 0, 20, 10]] * 2


def test_crop_with_an_image_index_equals_cropping_the_gathered_images():
    g = torch.Generator().manual_seed(3)
    images = torch.rand(3, 2, 20, 24, generator=g)
    index = torch.tensor([2, 0, 2, 1])
    boxes = torch.tensor([[1.0, 2, 15, 18], [0, 0, 24, 20], [5, 5, 9, 12], [3, 1, 20, 10]])
    assert torch.equal(crop(images, boxes, 8, index), crop(images[index], boxes, 8))
    with pytest.raises(ValueError, match="image indices"):
        crop(images, boxes, 8, index[:2])
