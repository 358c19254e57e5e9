"""Which torch device a run uses: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, checked up front."""

from __future__ import annotations

import torch

from inrkit.errors import ConfigError


def usable_here(name: str) -> bool:
    """Whether ``train.device`` value ``name`` names a device this machine has."""
    try:
        resolve_device(name)
    except ConfigError:
        return False
    return True


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` means CUDA when present; an unavailable device is a configuration error."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device: unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device: {name!r} requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"train.device: {name!r} does not exist ({torch.cuda.device_count()} GPU(s))")
    elif device.type != "cpu":
        raise ConfigError(f"train.device: {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device
