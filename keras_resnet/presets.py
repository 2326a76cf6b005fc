"""The table of named variants (preset name -> ``ResNet`` arguments), the paper's names and
the rules of which depths a style allows.

Plain data and functions with no TensorFlow import, so the command line, the experiments and
the search can check names and depths at once; :class:`keras_resnet.models.ResNet` applies
the same rules. Variants are data (as timm's ``model_args``):
``ResNet.from_preset(name, **overrides)`` builds ``ResNet(**{**PRESETS[name], **overrides})``.
"""

from __future__ import annotations

import types

from keras_resnet.validation import check_choice, check_int, check_ints

# The paper's names; plain data and functions, so the command line can check them at once.
SHORTCUTS = ("identity", "projection", "full_projection", "none")
SHORTCUT_ALIASES = {"A": "identity", "B": "projection", "C": "full_projection"}
VERSIONS = ("v1", "v2")
BLOCK_TYPES = ("basic", "bottleneck")
STYLES = ("cifar", "imagenet")

# ImageNet-style depth -> (block type, blocks per stage); ResNet paper, Table 1, plus the
# pre-activation paper's ResNet-200.
IMAGENET_DEPTHS = types.MappingProxyType({
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
})
CONVS_PER_BLOCK = types.MappingProxyType({"basic": 2, "bottleneck": 3})
CIFAR_STAGES = 3


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


def stage_layout(depth=20, style: str = "cifar", block: str | None = None, stage_blocks=None) -> tuple[str, tuple[int, ...], int]:
    """The block type, blocks per stage and actual depth of a ResNet; the one depth rule.

    CIFAR style: three stages of n blocks each, so depth is 6n+2 with basic blocks and 9n+2
    with bottleneck blocks (the stem and the classifier are the "+2"). ImageNet style: the
    depths of :data:`IMAGENET_DEPTHS` only, each with its own block type. ``stage_blocks``
    (blocks per stage) overrides ``depth`` for a custom network of either style.

    Args:
        depth: the network's depth (ignored when ``stage_blocks`` is given).
        style: ``"cifar"`` or ``"imagenet"``.
        block: ``"basic"``, ``"bottleneck"`` or None (the style's default for ``depth``).
        stage_blocks: optional sequence of blocks per stage.

    Returns:
        ``(block, stage_blocks, depth)``.

    Raises:
        ValueError: naming the bad value and, for a depth, the ones allowed.

    Example:
    >>> stage_layout(20)
    ('basic', (3, 3, 3), 20)
    >>> stage_layout(50, "imagenet")
    ('bottleneck', (3, 4, 6, 3), 50)
    """
    check_choice("style", style, STYLES, "'cifar' or 'imagenet'")
    check_choice("block", block, (*BLOCK_TYPES, None), "'basic', 'bottleneck' or None (the style's default)")
    if stage_blocks is not None:
        stage_blocks = check_ints("stage_blocks", stage_blocks, 1)
        block = block or ("basic" if style == "cifar" or sum(stage_blocks) <= 16 else "bottleneck")
        return block, stage_blocks, CONVS_PER_BLOCK[block] * sum(stage_blocks) + 2
    depth = check_int("depth", depth)
    if style == "imagenet":
        if depth not in IMAGENET_DEPTHS:
            raise ValueError(
                f"depth must be one of {sorted(IMAGENET_DEPTHS)} for ImageNet-style ResNets; "
                f"received depth={depth}"
            )
        default_block, blocks = IMAGENET_DEPTHS[depth]
        if block is not None and block != default_block:
            raise ValueError(
                f"ImageNet-style ResNet-{depth} uses {default_block} blocks; received block={block!r} "
                "(pass stage_blocks=... to build a custom network)"
            )
        return default_block, blocks, depth
    block = block or "basic"
    per = CIFAR_STAGES * CONVS_PER_BLOCK[block]
    if depth < per + 2 or (depth - 2) % per:
        valid = ", ".join(str(per * n + 2) for n in ((1, 2, 3, 5, 7, 9, 18, 200) if per == 6 else (1, 2, 6, 12, 18, 111)))
        hint = ""
        if block == "basic" and depth > 2 and (depth - 2) % 9 == 0:
            hint = f"; depth {depth} is 9n+2: pass block='bottleneck'"
        raise ValueError(
            f"depth must be {per}n+2 for CIFAR-style ResNets with {block} blocks "
            f"({valid}, ...); received depth={depth}{hint}"
        )
    n = (depth - 2) // per
    return block, (n,) * CIFAR_STAGES, depth


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


def check_architecture(preset: str, **overrides) -> dict:
    """A preset's arguments merged with ``overrides``, with the network's shape checked.

    The depth rule (:func:`stage_layout`), the shortcut type and the block version are checked
    here without TensorFlow, so that the command line refuses a bad combination at once; every
    other argument is checked by ``ResNet`` itself, before it builds a layer.

    Example:
    >>> check_architecture("resnet20", depth=56, shortcut="B")["shortcut"]
    'projection'
    >>> check_architecture("resnet20", depth=21)
    Traceback (most recent call last):
    ...
    ValueError: depth must be 6n+2 for CIFAR-style ResNets with basic blocks (8, 14, 20, 32, 44, 56, 110, 1202, ...); received depth=21
    """
    check_choice("preset", preset, PRESET_NAMES, "a preset name (see PRESET_NAMES)")
    args = {**PRESETS[preset], **overrides}
    stage_layout(args.get("depth", 20), args.get("style", "cifar"), args.get("block"), args.get("stage_blocks"))
    if "shortcut" in args:
        args["shortcut"] = normalize_shortcut(args["shortcut"])
    if "version" in args:
        args["version"] = normalize_version(args["version"])
    return args
