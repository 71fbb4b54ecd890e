"""Batched box crops and their inverse: the g(I; Ω) of EU-RL and the mask paste-back.

`crop` takes one square crop per box for a whole batch with `torchvision.ops.roi_align`
(no Python loop over images) and one bilinear sample at the centre of each output pixel's
bin (`sampling_ratio=1`): a plain bilinear crop-and-resize, one sample per output pixel as
in TensorFlow's `crop_and_resize`. These are the very points the spatial transformer's
`stn_crop` samples, so the Regress-STN row feeds DeepMask crops like those it was trained
on. roi_align's 2 x 2 average per bin would take four times the samples, and the crop was
then ~60% of a batched environment step on the CPU.

`paste` maps crop-frame mask probabilities back onto the full image with one
`grid_sample`, so a mask predicted on a crop is scored against the full-image ground truth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align


def crop(images: torch.Tensor, boxes: torch.Tensor, size: int,
         index: torch.Tensor | None = None) -> torch.Tensor:
    """Crop `boxes` (N, 4) xyxy in pixels -> (N, C, size, size), regions outside the image
    reading as zero.

    Box i is taken from image `index[i]` of `images` (M, C, H, W), or from image i when
    `index` is None (then M = N). Passing `index` saves gathering the images first.
    """
    if index is None:
        if images.shape[0] != boxes.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {boxes.shape[0]} boxes")
        index = torch.arange(boxes.shape[0], device=boxes.device)
    elif index.shape[0] != boxes.shape[0]:
        raise ValueError(f"{index.shape[0]} image indices but {boxes.shape[0]} boxes")
    rois = torch.cat([index.to(images.dtype)[:, None], boxes.to(images.dtype)], 1)
    return roi_align(images, rois, output_size=size, spatial_scale=1.0, sampling_ratio=1,
                     aligned=True)


def paste(crops: torch.Tensor, boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of `crop` for (N, S, S) crop-frame maps -> (N, H, W), zero outside boxes."""
    n = crops.shape[0]
    x0, y0, x1, y1 = boxes.to(crops.dtype).unbind(1)
    bw, bh = (x1 - x0).clamp(min=1e-3), (y1 - y0).clamp(min=1e-3)
    # pixel centre (j + 0.5) in image coords -> normalised [-1, 1] coords of the crop
    xs = torch.arange(width, dtype=crops.dtype, device=crops.device) + 0.5
    ys = torch.arange(height, dtype=crops.dtype, device=crops.device) + 0.5
    gx = (xs[None, :] - x0[:, None]) / bw[:, None] * 2 - 1
    gy = (ys[None, :] - y0[:, None]) / bh[:, None] * 2 - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), -1)
    out = F.grid_sample(crops[:, None], grid.reshape(n, height, width, 2), mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    return out[:, 0]


def full_boxes(n: int, height: int, width: int, device=None) -> torch.Tensor:
    """Boxes covering whole images: (n, 4) of [0, 0, width, height]."""
    return torch.tensor([[0.0, 0.0, width, height]], device=device).expand(n, 4).clone()
