"""Image and label-map helpers shared by the stagers and `draw` of every dataset module.

Staging resizes images bilinearly (PIL, antialiased when shrinking), integer label maps
by nearest neighbour (pixel-centre sampling, so no label value is ever invented) and
binary masks by area (a staged pixel is in the mask when at least half of it was);
`letterbox` fits any of the three into a zero-padded square. `overlay` and `draw_boxes`
draw staged labels over their image for the contact sheets
(`results/plots/dataset-<name>.png`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# ---------------------------------------------------------------------------- resizing


def resize_image(image: np.ndarray, size) -> np.ndarray:
    """Bilinear (antialiased) resize of an HxWx3 uint8 image to `size` = (H, W)."""
    h, w = int(size[0]), int(size[1])
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def resize_nearest(label: np.ndarray, size) -> np.ndarray:
    """Nearest-neighbour resize of the first two axes (pixel-centre sampling, any dtype)."""
    h, w = int(size[0]), int(size[1])
    if label.shape[:2] == (h, w):
        return label
    rows = np.minimum(((np.arange(h) + 0.5) * label.shape[0] / h).astype(np.int64),
                      label.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * label.shape[1] / w).astype(np.int64),
                      label.shape[1] - 1)
    return label[rows[:, None], cols[None, :]]


def resize_mask(mask: np.ndarray, size) -> np.ndarray:
    """Resize a binary HxW mask: area average when shrinking, bilinear when growing,
    thresholded at 1/2 (a small object keeps its area instead of flickering)."""
    h, w = int(size[0]), int(size[1])
    if mask.shape == (h, w):
        return mask.astype(bool)
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    shrink = h * w < mask.shape[0] * mask.shape[1]
    t = F.interpolate(t, size=(h, w), mode="area" if shrink else "bilinear")
    return (t[0, 0] >= 0.5).numpy()


def resize(array: np.ndarray, size) -> np.ndarray:
    """Resize by kind: bool -> `resize_mask`, HxWx3 uint8 -> `resize_image`, otherwise
    (integer label or instance maps) -> `resize_nearest`."""
    if array.dtype == bool:
        return resize_mask(array, size)
    if array.ndim == 3 and array.dtype == np.uint8:
        return resize_image(array, size)
    return resize_nearest(array, size)


def letterbox(array: np.ndarray, size: int, centre: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Fit `array` (image, mask or label map; see `resize`) into size x size keeping its
    aspect ratio, padded with zeros, top-left aligned or centred.

    Returns the square and the transform (sx, sy, pad_x, pad_y): a source coordinate x in
    pixel-edge units maps to x * sx + pad_x (a 0-based pixel centre x: (x + 0.5) * sx -
    0.5 + pad_x).
    """
    h, w = array.shape[:2]
    s = size / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    py, px = ((size - nh) // 2, (size - nw) // 2) if centre else (0, 0)
    out = np.zeros((size, size, *array.shape[2:]), array.dtype)
    out[py:py + nh, px:px + nw] = resize(array, (nh, nw))
    return out, np.array([nw / w, nh / h, px, py], np.float32)


# ------------------------------------------------------------------------- label maps


def relabel(label: np.ndarray) -> tuple[np.ndarray, int]:
    """Map the nonzero values of `label` to 1..K keeping their order; 0 stays 0."""
    values, inverse = np.unique(label, return_inverse=True)
    inverse = inverse.reshape(label.shape)
    if values.size and values[0] == 0:
        return inverse.astype(np.int32), int(values.size - 1)
    return (inverse + 1).astype(np.int32), int(values.size)


def pack_colours(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 colour-coded labels -> HxW int64 (R << 16 | G << 8 | B); black stays 0."""
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


# ----------------------------------------------------------------------------- tensors


def chw(image: np.ndarray) -> torch.Tensor:
    """HxWx3 numpy -> contiguous 3xHxW tensor (same dtype)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def hwc(image) -> np.ndarray:
    """A staged 3xHxW image (tensor or array) -> HxWx3 numpy, for drawing."""
    return np.asarray(image).transpose(1, 2, 0)


# ----------------------------------------------------------------------------- drawing

#: one colour per instance id (id % 256), 0 black: neighbouring instances differ
INSTANCE_PALETTE = np.random.default_rng(7).integers(60, 256, (256, 3)).astype(np.uint8)
INSTANCE_PALETTE[0] = 0


def overlay(image: np.ndarray, label: np.ndarray, palette: np.ndarray = INSTANCE_PALETTE,
            skip: tuple = (0,), alpha: float = 0.5, regions: np.ndarray | None = None,
            edges: str = "dark") -> np.ndarray:
    """Blend `palette[label]` over `image` (HxWx3) and outline the regions; labels in
    `skip` (background, ignore, "other") stay clear.

    `regions` (default: the label map) decides where outlines run. `edges="dark"`
    darkens every outline (semantic maps); `edges="colour"` draws the outlines of the
    blended regions in their own colour (instance maps, where neighbours must part).
    """
    image = np.asarray(image, np.float32)
    label = np.asarray(label).astype(np.int64)
    regions = label if regions is None else np.asarray(regions)
    colour = palette[label % len(palette)].astype(np.float32)
    blend = ~np.isin(label, skip)
    out = np.where(blend[..., None], (1 - alpha) * image + alpha * colour, image)
    dy, dx = regions[:-1] != regions[1:], regions[:, :-1] != regions[:, 1:]
    edge = np.zeros(label.shape, bool)
    edge[:-1] |= dy
    edge[:, :-1] |= dx
    if edges == "colour":  # both sides of a boundary: every instance gets its whole outline
        edge[1:] |= dy
        edge[:, 1:] |= dx
        edge &= blend
        out[edge] = colour[edge]
    else:
        out[edge] *= 0.4
    return np.clip(out, 0, 255).astype(np.uint8)


def draw_boxes(image: np.ndarray, boxes, colours) -> np.ndarray:
    """Outline xyxy `boxes` (pixel units, clipped to the image) on a copy of HxWx3
    `image`, one colour per box (`colours`: [n,3] or one RGB for all)."""
    out = np.array(image, np.uint8)
    h, w = out.shape[:2]
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    colours = np.broadcast_to(np.asarray(colours, np.uint8), (len(boxes), 3))
    for (x0, y0, x1, y1), c in zip(np.rint(boxes).astype(np.int64), colours, strict=True):
        x0, x1 = np.clip([x0, x1], 0, w - 1)
        y0, y1 = np.clip([y0, y1], 0, h - 1)
        out[y0:y1 + 1, [x0, x1]] = c
        out[[y0, y1], x0:x1 + 1] = c
    return out
