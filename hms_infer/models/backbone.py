"""timm image backbones as the training code built them: one input channel, no download, no classifier."""
from __future__ import annotations

import timm
from torch import nn


def is_hgnetv2(name: str) -> bool:
    return name.startswith("hgnetv2")


def backbone_exists(name: str) -> bool:
    """Whether timm can build `name` (a model name, optionally with a pretrained tag: `hgnetv2_b4.ssld...`)."""
    return timm.is_model(name)


def create_backbone(name: str) -> tuple[nn.Module, int]:
    """timm `name` with `in_chans=1`, random init, classifier replaced by `nn.Identity()`.

    The classifier is the module timm's pretrained cfg names (`head.fc` for hgnetv2, `classifier` for the
    EfficientNet family), so `head.last_conv` of hgnetv2 stays. Returns (model, feature size).
    """
    try:
        model = timm.create_model(name, pretrained=False, in_chans=1)
    except RuntimeError as e:  # timm: "Unknown model (...)"
        raise ValueError(f"timm cannot build backbone {name!r}: {e}") from None
    path = model.pretrained_cfg.get("classifier")
    classifier = model.get_submodule(path) if path else None
    if not isinstance(classifier, nn.Linear):
        raise ValueError(f"backbone {name!r}: no linear classifier at {path!r} to replace")
    parent, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent), attr, nn.Identity())
    return model, classifier.in_features
