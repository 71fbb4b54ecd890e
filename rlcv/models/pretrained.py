"""Pretrained weights through torchvision's weights API, and their extra-channel init.

The papers start their backbones from ImageNet (EU-RL's ResNet-18 agent, Rao et al.'s
ResNet-101, CiSS-Net's dilated ResNet); the `paper` profile names the weights by their
torchvision enum, e.g. `weights: ResNet101_Weights.IMAGENET1K_V1`, and `weights: none`
asks for a random initialisation explicitly. Files live where torchvision keeps them,
`$TORCH_HOME/hub/checkpoints/<file>` (torch.hub.get_dir()): with internet they are
downloaded as torchvision does; with RLCV_OFFLINE=1 (or when the download fails) a
missing file is one clear error naming the file and its URL.

Extra input channels (an agent's state is the RGB crop stacked with the recognition
network's output): the first convolution's RGB filters are copied and the filters of the
other channels start at zero, so the pretrained network sees its ImageNet input at the
start and learns how to use the rest.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from rlcv.errors import RlcvError

NONE = "none"


class WeightsError(RlcvError):
    """A weights setting that names no torchvision weights, or a file that is missing."""


def resolve(name: str | None):
    """The torchvision `WeightsEnum` member named `name` (`"ResNet18_Weights.IMAGENET1K_V1"`),
    or None for `"none"` / None."""
    if name is None or str(name).lower() == NONE:
        return None
    from torchvision.models import get_weight

    try:
        return get_weight(str(name))
    except (ValueError, KeyError, AttributeError):
        raise WeightsError(f"weights: {name!r} is not a torchvision weights name "
                           "(e.g. ResNet18_Weights.IMAGENET1K_V1) nor 'none'") from None


def cache_file(name: str) -> Path | None:
    """Where torchvision keeps the file of weights `name` ($TORCH_HOME/hub/checkpoints/)."""
    w = resolve(name)
    if w is None:
        return None
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(w.url)


def available(name: str | None) -> bool:
    """True for `none` and for weights whose file is in the hub cache (no download)."""
    path = cache_file(name) if name else None
    return path is None or path.is_file()


def state_dict(name: str) -> dict[str, torch.Tensor]:
    """The state dict of weights `name`, from the hub cache, else downloaded (unless
    RLCV_OFFLINE=1); a missing file is one WeightsError naming it and its URL."""
    w = resolve(name)
    if w is None:
        raise WeightsError("weights: 'none' has no state dict")
    path = cache_file(name)
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:   # a damaged or truncated file
            raise WeightsError(f"{path}: not a readable state dict ({exc.__class__.__name__}); "
                               f"delete it and download {w.url} again") from None
    hint = (f"{name}: weight file {path} is missing; download {w.url} into "
            f"{path.parent}/ (torchvision does so when online), or set weights: none")
    if os.environ.get("RLCV_OFFLINE") == "1":
        raise WeightsError(hint)
    try:
        return w.get_state_dict(progress=False, check_hash=True)
    except Exception:   # no network, a proxy refusing, a hash mismatch
        raise WeightsError(hint) from None


def require(name: str | None):
    """The weights enum of `name` once its file is in the hub cache (downloaded if need
    be, as `state_dict`); None for none. For torchvision builders that load it themselves."""
    w = resolve(name)
    if w is not None and not available(name):
        state_dict(name)
    return w


def widen_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """(O, 3, k, k) RGB filters -> (O, in_channels, k, k): RGB copied, the rest zero."""
    if in_channels < weight.shape[1]:
        raise WeightsError(f"first convolution: {in_channels} input channels, the weights "
                           f"have {weight.shape[1]}")
    out = weight.new_zeros(weight.shape[0], in_channels, *weight.shape[2:])
    out[:, : weight.shape[1]] = weight
    return out


def load_into(model: nn.Module, name: str | None, first_conv: str = "conv1.weight",
              skip: tuple[str, ...] = ("fc.",), prefix: str = "") -> str:
    """Load weights `name` into `model` (a torchvision backbone or a module holding one
    under `prefix`), widening `first_conv` to the model's input channels and skipping the
    classifier keys `skip`; every other key must match. Returns the weights name, or
    "none" when `name` is none (the model keeps its random init)."""
    if resolve(name) is None:
        return NONE
    src = state_dict(name)
    own = model.state_dict()
    state = {}
    for key, value in src.items():
        if any(key.startswith(s) for s in skip):
            continue
        target = prefix + key
        if target not in own and key.endswith("num_batches_tracked"):
            continue   # FrozenBatchNorm2d keeps no batch count
        if target not in own:
            raise WeightsError(f"{name}: key {key} has no counterpart {target} in the model")
        if key == first_conv and own[target].shape[1] != value.shape[1]:
            value = widen_first_conv(value, own[target].shape[1])
        if own[target].shape != value.shape:
            raise WeightsError(f"{name}: {key} has shape {tuple(value.shape)}, the model's "
                               f"{target} {tuple(own[target].shape)}")
        state[target] = value
    model.load_state_dict(state, strict=False)
    return str(name)
