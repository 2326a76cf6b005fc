"""The table of named variants (preset name -> ``ResNet`` arguments) and the paper's names.

Plain data with no TensorFlow import, so the command line and the experiments can check names
at once. Variants are
data (as timm's ``model_args``): ``ResNet.from_preset(name, **overrides)`` builds
``ResNet(**{**PRESETS[name], **overrides})``.
"""

from __future__ import annotations

import types

# The paper's names; plain data and functions, so the command line can check them at once.
SHORTCUTS = ("identity", "projection", "full_projection", "none")
SHORTCUT_ALIASES = {"A": "identity", "B": "projection", "C": "full_projection"}
VERSIONS = ("v1", "v2")
BLOCK_TYPES = ("basic", "bottleneck")


def normalize_shortcut(shortcut: str) -> str:
    """Returns the canonical shortcut name for ``shortcut`` (accepting ``"A"``/``"B"``/``"C"``).

    Raises:
        ValueError: if ``shortcut`` is not a known shortcut type or alias.
    """
    if isinstance(shortcut, str):
        key = shortcut.strip()
        if key.upper() in SHORTCUT_ALIASES:
            return SHORTCUT_ALIASES[key.upper()]
        if key.lower() in SHORTCUTS:
            return key.lower()
    raise ValueError(
        f"shortcut must be one of {', '.join(map(repr, SHORTCUTS))} "
        f"(or the paper's aliases 'A', 'B', 'C'); received shortcut={shortcut!r}"
    )


def normalize_version(version: str) -> str:
    """Returns ``"v1"`` or ``"v2"``; raises ``ValueError`` for anything else."""
    if isinstance(version, str) and version.strip().lower() in VERSIONS:
        return version.strip().lower()
    raise ValueError(f"version must be 'v1' or 'v2'; received version={version!r}")


# keras.applications' ResNet50/101/152 (the original Caffe v1): conv biases, BatchNorm epsilon
# 1.001e-5, the stride on the first 1x1 conv of a stage.
KERAS_APPLICATIONS_V1 = dict(
    style="imagenet", version="v1", shortcut="projection", use_bias=True, bn_epsilon=1.001e-5,
    stride_in_1x1=True, classes=1000,
)


def _cifar(depth, shortcut="identity", **kw):
    return dict(style="cifar", depth=depth, version="v1", shortcut=shortcut, block="basic", **kw)


def _imagenet(depth, version="v1", shortcut="projection", **kw):
    return dict(style="imagenet", depth=depth, version=version, shortcut=shortcut, classes=1000, **kw)


# Variants are data: a name maps to constructor arguments, merged with the user's overrides.
# The CIFAR nets use option A shortcuts as in the paper, so resnetN and plainN have exactly the
# same parameters.
PRESETS = types.MappingProxyType(
    {
        **{f"resnet{d}": _cifar(d) for d in (20, 32, 44, 56, 110, 1202)},
        **{f"plain{d}": _cifar(d, shortcut="none") for d in (20, 32, 44, 56, 110)},
        "resnet164": dict(style="cifar", depth=164, version="v2", shortcut="projection", block="bottleneck"),
        "resnet1001": dict(style="cifar", depth=1001, version="v2", shortcut="projection", block="bottleneck"),
        "resnet18": _imagenet(18),
        "resnet34": _imagenet(34),
        "plain18": _imagenet(18, shortcut="none"),
        "plain34": _imagenet(34, shortcut="none"),
        **{f"resnet{d}": dict(depth=d, **KERAS_APPLICATIONS_V1) for d in (50, 101, 152)},
        **{f"resnet{d}v2": _imagenet(d, version="v2") for d in (50, 101, 152)},
    }
)
PRESET_NAMES = tuple(PRESETS)
