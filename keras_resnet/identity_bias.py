"""BatchNorm biases residual blocks towards the identity at initialisation (De & Smith, 2020).

De and Smith, "Batch Normalization Biases Residual Blocks Towards the Identity Function in Deep
Networks" (NeurIPS 2020, arXiv:2002.10444): in a pre-activation (v2) ResNet, the BatchNorm at
the start of each residual branch scales the branch's input to unit variance, so each branch
``F`` adds a variance of about 1 to the skip path, which therefore carries the sum of all
earlier branches. In block ``l`` the ratio ``||F(x)|| / ||x||`` at initialisation then falls
like ``1 / sqrt(l)``: deep blocks start close to the identity. Without normalisation each
branch's output is as large as its input, the ratio stays about constant and the signal's
variance doubles with every block (``2**l``).

:func:`residual_ratios` measures the ratio per block in both settings, :func:`fit_exponent`
fits its power law in the block index, :func:`identity_bias` runs the whole experiment on the
offline digits (ResNet-110 and ResNet-1001 by default) and writes a JSON file and a log-log
plot. Arguments are validated before TensorFlow loads.
"""

from __future__ import annotations

import math
import os
import time

# numpy and Keras are imported inside the functions that use them: the command line reads this
# module's defaults and must answer --help at once.
from keras_resnet import fileio
from keras_resnet.data import DIGITS_TEST_SIZE
from keras_resnet.presets import CIFAR_STAGES, CONVS_PER_BLOCK, stage_layout
from keras_resnet.validation import check_float, check_int, check_path, check_type, is_int

DEFAULT_NETS = ("110", "1001")
SETTINGS = ("batchnorm", "no_batchnorm")
SETTING_LABELS = {"batchnorm": "with BatchNorm (batch statistics)",
                  "no_batchnorm": "without BatchNorm (inference mode at init)"}
# The fit starts at the second block: the first block's input is the stem's output, not a sum
# of earlier residual branches, so it is not on the power law.
FIRST_FITTED_BLOCK = 2
DIGITS_TRAIN_IMAGES = 1797 - DIGITS_TEST_SIZE  # scikit-learn's digits, less the fixed test split
JSON_FILE, PNG_FILE = "identity_bias.json", "identity_bias.png"
DEFAULT_OUT = os.path.join("runs", "identity_bias")
STEM_VARIANCE = 2.0


# ---- arguments --------------------------------------------------------------------------------

def parse_net(net) -> tuple[int, str]:
    """A network as ``(depth, block)``: a v2 CIFAR-style ResNet of ``depth`` with ``block`` blocks.

    Accepts ``(depth, block)``, ``"depth:block"`` or a depth alone (an int or a digit string),
    which means basic blocks when the depth is 6n+2 and bottleneck blocks when it is only 9n+2.
    Depths such as 56, 110 or 164 are both; write ``"164:bottleneck"`` for the pre-activation
    paper's ResNet-164.

    Example:
    >>> parse_net("110"), parse_net(1001), parse_net("164:bottleneck")
    ((110, 'basic'), (1001, 'bottleneck'), (164, 'bottleneck'))
    """
    if isinstance(net, str):
        depth, _, block = net.strip().partition(":")
        block = block or None
        depth = int(depth) if depth.strip().isdigit() else depth
    elif isinstance(net, (tuple, list)) and len(net) == 2:
        depth, block = net
    else:
        depth, block = net, None
    if not is_int(depth):
        raise ValueError(f"a net is a depth, 'depth:block' or (depth, block); received net={net!r}")
    if block is None:
        per_basic = CIFAR_STAGES * CONVS_PER_BLOCK["basic"]
        per_bottleneck = CIFAR_STAGES * CONVS_PER_BLOCK["bottleneck"]
        if depth > 2 and (depth - 2) % per_basic == 0:
            block = "basic"
        elif depth > 2 and (depth - 2) % per_bottleneck == 0:
            block = "bottleneck"
        else:
            raise ValueError(
                f"depth must be {per_basic}n+2 (basic blocks: 20, 56, 110, ...) or {per_bottleneck}n+2 "
                f"(bottleneck blocks: 11, 164, 1001, ...) for a CIFAR-style ResNet; received depth={depth}"
            )
    block, _, depth = stage_layout(int(depth), "cifar", block)
    return depth, block


def _check_nets(nets) -> tuple[tuple[int, str], ...]:
    if isinstance(nets, (str, int)) or not isinstance(nets, (tuple, list)) or not nets:
        raise ValueError(f"nets must be a non-empty list of nets (depths or 'depth:block'); received nets={nets!r}")
    parsed = tuple(parse_net(net) for net in nets)
    if len(set(parsed)) != len(parsed):
        raise ValueError(f"nets must be distinct; received nets={list(nets)!r}")
    return parsed


def _net_name(depth: int, block: str) -> str:
    return f"resnet{depth}v2" + ("-bottleneck" if block == "bottleneck" and (depth - 2) % 6 == 0 else "")


# ---- the measurement --------------------------------------------------------------------------

def check_unnormalised_at_init(model) -> None:
    """Checks that ``model``'s blocks in inference mode compute their branches without normalising.

    A fresh BatchNorm has moving mean 0, moving variance 1, gamma 1 and beta 0, so in inference
    mode it only multiplies by ``1 / sqrt(1 + epsilon)`` (1 - 5e-6 for the default epsilon): the
    block is the same network without BatchNorm, up to that factor per layer. Trained
    statistics, or biases in the convolutions, would break that (and the scale invariance
    :func:`residual_ratios` relies on), so they raise ``ValueError`` naming the layer.
    """
    import keras
    import numpy as np

    expected = {"moving_mean": 0.0, "moving_variance": 1.0, "gamma": 1.0, "beta": 0.0}
    for block in model.residual_blocks:
        for layer in [*block.preact_layers, *block.branch_layers, *block.shortcut_layers]:
            if isinstance(layer, keras.layers.BatchNormalization):
                for attribute, value in expected.items():
                    variable = getattr(layer, attribute, None)
                    if variable is not None and not np.all(keras.ops.convert_to_numpy(variable) == value):
                        raise ValueError(
                            f"{block.name}/{layer.name}: {attribute} is not {value:g} everywhere, so this BatchNorm "
                            "is not at its initial state and inference mode would normalise; measure a fresh model"
                        )
            elif isinstance(layer, keras.layers.Conv2D) and layer.use_bias and np.any(
                    keras.ops.convert_to_numpy(layer.bias)):
                raise ValueError(f"{block.name}/{layer.name} has a non-zero bias; the measurement needs a "
                                 "block without biases (use_bias=False)")


def residual_ratios(model, x, batchnorm: bool = True) -> list[dict]:
    """``||F(x)|| / ||x||`` per residual block of a v2 ResNet at initialisation, with or without BatchNorm.

    De & Smith (2020): with BatchNorm the ratio falls like ``1 / sqrt(l)`` in block ``l``; without
    it, it stays about constant. ``x`` is what the block's shortcut carries: the block's input,
    or where the shape changes the shortcut's output (option A: subsampled and zero-padded).

    * ``batchnorm=True``: BatchNorm on batch statistics, as in the first training step. The
      moving statistics, which training-mode calls update, are restored afterwards.
    * ``batchnorm=False``: BatchNorm in inference mode on a fresh model, which then does not
      normalise (:func:`check_unnormalised_at_init` checks that it is fresh). The signal's
      variance doubles per block, past float32's range after about 250 blocks (ResNet-1001 has
      333), so each block's input is first divided by its root mean square. That changes no
      ratio: a v2 block without normalisation and without biases is a sum of convolutions and
      ReLUs, positively homogeneous (``block(c * x) = c * block(x)`` for ``c > 0``), so
      ``||F(c x)|| / ||c x||`` does not depend on ``c``. This keeps the float32 kernels that
      training uses (float64 convolutions are slow or missing on some devices) and needs no
      wider type for the norms.

    Args:
        model: a :class:`keras_resnet.models.ResNet` with ``version="v2"``, shortcuts (not
            ``"none"``) and no stochastic depth.
        x: array ``(batch, *model.input_shape[1:])``, standardised; batch >= 2 with BatchNorm.
        batchnorm: bool, default True.

    Returns:
        One dict per block in network order: ``block`` (the layer name), ``stage``, ``index``
        (1 for the first block), ``ratio``.

    Example:
    >>> import numpy as np; from keras_resnet import ResNet
    >>> model = ResNet(depth=20, version="v2", shortcut="identity", input_shape=(8, 8, 1))
    >>> x = np.random.default_rng(0).normal(size=(4, 8, 8, 1))
    >>> rows = residual_ratios(model, x, batchnorm=True)
    >>> len(rows), rows[-1]["ratio"] < rows[1]["ratio"]
    (9, True)
    """
    import keras
    import numpy as np

    from keras_resnet.models import ResNet

    check_type("model", model, ResNet, "a keras_resnet.ResNet")
    check_type("batchnorm", batchnorm, bool, "True or False")
    config = model.get_config()
    if config["version"] != "v2" or config["shortcut"] == "none" or config["drop_path_rate"]:
        raise ValueError(
            "residual_ratios needs a v2 ResNet with shortcuts and no stochastic depth; received "
            f"version={config['version']!r}, shortcut={config['shortcut']!r}, drop_path_rate={config['drop_path_rate']!r}"
        )
    x = np.asarray(x, dtype="float32")
    expected = tuple(model.input_shape[1:])
    if x.ndim != len(expected) + 1 or any(e is not None and e != d for e, d in zip(expected, x.shape[1:])):
        raise ValueError(f"x must be a batch of shape (batch, {', '.join(map(str, expected))}); "
                         f"received an array of shape {x.shape}")
    if len(x) < (2 if batchnorm else 1):
        raise ValueError(f"batch statistics need a batch of at least 2 images; received {len(x)}")
    if not batchnorm:
        check_unnormalised_at_init(model)
    blocks = model.residual_blocks
    # Layers before the first block (the stem) as a model of their own: public graph access.
    stem = keras.Model(model.inputs[0], blocks[0].input)
    saved = [(v, v.numpy()) for v in model.non_trainable_variables] if batchnorm else []
    rows = []
    try:
        h = stem(x, training=batchnorm)
        for index, block in enumerate(blocks, start=1):
            if not batchnorm:
                rms = math.sqrt(float(np.mean(np.square(keras.ops.convert_to_numpy(h), dtype="float64"))))
                h = h / rms if rms > 0 else h
            f = block.residual_branch(h, training=batchnorm)
            s = block.shortcut_branch(h, training=batchnorm)
            f_norm, s_norm = _norm(f), _norm(s)
            ratio = f_norm / s_norm if s_norm > 0 else math.inf
            if not math.isfinite(ratio):
                raise ValueError(f"{block.name}: ||F(x)|| = {f_norm:g} and ||x|| = {s_norm:g} give no finite ratio")
            stage = block.name.partition("_")[0].removeprefix("stage")
            rows.append({"block": block.name, "stage": int(stage) if stage.isdigit() else None,
                         "index": index, "ratio": ratio})
            h = keras.ops.add(s, f)  # the v2 block's output: nothing follows the addition
    finally:
        for variable, value in saved:
            variable.assign(value)
    return rows


def _norm(a) -> float:
    import keras
    import numpy as np

    return float(np.sqrt(np.sum(np.square(keras.ops.convert_to_numpy(a), dtype="float64"))))


def variance_count(model, stem_variance: float = STEM_VARIANCE) -> list[float]:
    """De & Smith's prediction of ``||F(x)|| / ||x||`` per block with BatchNorm: counting variances.

    With BatchNorm each branch outputs a variance of 1 (a He-initialised convolution of a
    normalised, rectified input), independent of the skip path, so the skip path's variance
    grows by 1 per block from the stem's. Option A's zero-padding scales it by the fraction of
    channels it keeps (in / out), and a projection shortcut (which in v2 sees the normalised
    input) restarts it at 1. Block ``l`` then has ratio ``1 / sqrt(variance of its skip path)``:
    ``1 / sqrt(l + 1)`` for a stack without reshaping blocks.

    Args:
        model: a built v2 :class:`keras_resnet.models.ResNet`.
        stem_variance: float > 0, default 2: a He-initialised stem convolution of standardised
            images (variance 2 / fan-in per weight, fan-in terms of variance 1).

    Returns:
        The predicted ratio of each block, in network order.

    Example:
    >>> from keras_resnet import ResNet
    >>> model = ResNet(depth=20, version="v2", shortcut="identity", input_shape=(8, 8, 1))
    >>> [round(r, 3) for r in variance_count(model)[:4]]
    [0.707, 0.577, 0.5, 0.632]
    """
    stem_variance = check_float("stem_variance", stem_variance, 0, exclusive_minimum=True)
    variance, ratios = stem_variance, []
    for block in model.residual_blocks:
        kind = block.resolved_shortcut
        if kind == "projection":
            variance = 1.0
        else:  # identity, or option A: zero-padded channels carry nothing
            variance *= block.input.shape[-1] / block.out_channels
        ratios.append(1 / math.sqrt(variance))
        variance += 1.0
    return ratios


def fit_exponent(index, ratio, first: int = FIRST_FITTED_BLOCK) -> dict:
    """The power law ``ratio ~ prefactor * index ** exponent``, by least squares in log-log.

    Args:
        index: block indices (1 for the first block).
        ratio: the matching positive ratios.
        first: int, default 2. Fit the blocks with ``index >= first`` only.

    Returns:
        ``{"exponent", "prefactor", "r2", "blocks", "first"}``: the slope of ``log ratio``
        against ``log index``, ``exp`` of the intercept, the fit's coefficient of determination,
        how many blocks were fitted and from which index.

    Example:
    >>> fit = fit_exponent([1, 2, 3, 4], [3.0, 3 / 2 ** 0.5, 3 / 3 ** 0.5, 1.5], first=1)
    >>> round(fit["exponent"], 6), round(fit["prefactor"], 6), fit["blocks"]
    (-0.5, 3.0, 4)
    """
    import numpy as np

    first = check_int("first", first, 1)
    index, ratio = np.asarray(index, dtype="float64"), np.asarray(ratio, dtype="float64")
    if index.ndim != 1 or index.shape != ratio.shape:
        raise ValueError(f"index and ratio must be 1-D and of one length; received shapes {index.shape} and {ratio.shape}")
    if not (np.all(np.isfinite(ratio)) and np.all(ratio > 0) and np.all(index >= 1)):
        raise ValueError("the fit needs finite positive ratios and indices >= 1; received "
                         f"ratio from {ratio.min(initial=math.inf):g} to {ratio.max(initial=-math.inf):g}, "
                         f"index from {index.min(initial=math.inf):g}")
    kept = index >= first
    if len(np.unique(index[kept])) < 2:
        raise ValueError(f"the fit needs at least two distinct block indices >= first={first}; "
                         f"received {int(kept.sum())} blocks")
    u, v = np.log(index[kept]), np.log(ratio[kept])
    slope, intercept = np.polyfit(u, v, 1)
    residual = v - (slope * u + intercept)
    spread = float(np.sum((v - v.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual ** 2)) / spread if spread > 0 else 1.0
    return {"exponent": float(slope), "prefactor": float(np.exp(intercept)), "r2": r2,
            "blocks": int(kept.sum()), "first": first}


# ---- the experiment ---------------------------------------------------------------------------

def identity_bias(
    nets=DEFAULT_NETS,
    *,
    width_multiplier: float = 1.0,
    image_size: int = 16,
    batch: int = 64,
    seed: int = 0,
    set_global_seed: bool = False,
    out: str | os.PathLike = DEFAULT_OUT,
    dry_run: bool = False,
) -> dict:
    """De & Smith's claim on the offline digits: ``||F(x)|| / ||x||`` per block, with and without BatchNorm.

    Builds each net as a v2 (pre-activation) CIFAR-style ResNet with option A (identity)
    shortcuts at initialisation, measures :func:`residual_ratios` with BatchNorm (batch
    statistics) and without it (inference mode at initialisation) on one standardised batch of
    the digits' training split, fits :func:`fit_exponent` from the second block on, and writes
    ``identity_bias.json`` (settings, rows, fits) and ``identity_bias.png`` (ratio against block
    index on log-log axes, with the ``1 / sqrt(l)`` reference) into ``out``. Each fit also has
    the exponent over the first stage alone (``first_stage_exponent``: no reshaping block
    there, the cleanest test of ``-0.5``) and the exponent that :func:`variance_count` predicts
    for the same blocks (``predicted_exponent``; 0 without BatchNorm).

    Option A, not the pre-activation paper's projections, because De & Smith's argument needs
    a skip path that carries the sum of all earlier branches: a v2 projection shortcut takes the
    normalised pre-activation, which would reset that sum at the first block of each stage. The
    zero-padding of option A still halves the skip path's mean square at the two downsampling
    blocks (half of the new channels are zeros), which lifts the ratio there by about
    ``sqrt(2)`` and makes the fitted exponent a little shallower than -0.5.

    Args:
        nets: nets as :func:`parse_net` reads them; default ``("110", "1001")``: ResNet-110
            (basic blocks, 54 of them) and ResNet-1001 (bottleneck blocks, 333).
        width_multiplier: float > 0, default 1 (the papers' widths: 16 to 64 channels, 40 s for
            the default nets on 2 CPU cores). At 0.25 the unnormalised ratio is much noisier:
            a bottleneck's narrowest layers have 4 channels.
        image_size: int >= 4, default 16. The digits (8x8) resized to this size.
        batch: int in [2, 1437], default 64. Images of the measured batch.
        seed: int >= 0, default 0. Seeds the batch's shuffle.
        set_global_seed: bool, default False. Also call ``keras.utils.set_random_seed(seed)``
            before building each net, so that its initial weights are reproducible; this
            re-seeds Python's, NumPy's and the backend's global generators.
        out: the folder for the JSON file and the plot.
        dry_run: bool, default False. Only validate, and return the validated settings
            (``nets`` as ``(depth, block)`` pairs) without loading TensorFlow.

    Returns:
        ``{"rows": [...], "fits": [...], "meta": {...}, "json": path, "png": path}``; each row has
        ``net``, ``depth``, ``block_type``, ``setting`` (``"batchnorm"`` or ``"no_batchnorm"``),
        ``block``, ``stage``, ``index``, ``ratio``, ``predicted``; each fit ``net``, ``depth``,
        ``block_type``, ``setting``, :func:`fit_exponent`'s keys, ``predicted_exponent`` and
        ``first_stage_exponent`` (None with fewer than two first-stage blocks from block 2).

    Example:
    >>> report = identity_bias(["20"], width_multiplier=0.25, image_size=8, batch=4, out="identity_bias")
    >>> [(f["net"], f["setting"], f["blocks"]) for f in report["fits"]]
    [('resnet20v2', 'batchnorm', 8), ('resnet20v2', 'no_batchnorm', 8)]
    """
    nets = _check_nets(nets)
    width_multiplier = check_float("width_multiplier", width_multiplier, 0, exclusive_minimum=True)
    min_size = 2 ** (CIFAR_STAGES - 1)
    image_size = check_int("image_size", image_size, min_size, note="(the nets downsample by 4)")
    batch = check_int("batch", batch, 2, DIGITS_TRAIN_IMAGES,
                      note=f"(batch statistics need 2 images; the digits have {DIGITS_TRAIN_IMAGES} to train on)")
    seed = check_int("seed", seed, 0)
    check_type("set_global_seed", set_global_seed, bool, "True or False")
    check_path("out", out)
    check_type("dry_run", dry_run, bool, "True or False")
    if dry_run:
        return dict(nets=nets, width_multiplier=width_multiplier, image_size=image_size, batch=batch, seed=seed,
                    out=out)

    import keras

    from keras_resnet.data import load_dataset, preprocessing
    from keras_resnet.models import ResNet

    start = time.perf_counter()
    data = load_dataset("digits", image_size=image_size, batch_size=batch, seed=seed, augment=False,
                        validation_split=0.0)
    images, _ = next(iter(data.train))
    x = keras.ops.convert_to_numpy(preprocessing(data)(images.numpy()))
    rows, fits, timings = [], [], {}
    for depth, block in nets:
        name = _net_name(depth, block)
        net_start = time.perf_counter()
        if set_global_seed:
            keras.utils.set_random_seed(seed)
        model = ResNet(depth=depth, block=block, version="v2", shortcut="identity", include_top=False,
                       input_shape=data.input_shape, width_multiplier=width_multiplier, name=name)
        # Without BatchNorm first: the measurement checks that the model is still fresh.
        counted = variance_count(model)
        for setting in reversed(SETTINGS):
            measured = residual_ratios(model, x, batchnorm=setting == "batchnorm")
            # Without normalisation a He-initialised branch is as large as its input: ratio 1.
            predicted = counted if setting == "batchnorm" else [1.0] * len(measured)
            measured = [{**r, "predicted": p} for r, p in zip(measured, predicted)]
            rows += [{"net": name, "depth": depth, "block_type": block, "setting": setting, **r} for r in measured]
            index, ratio = [r["index"] for r in measured], [r["ratio"] for r in measured]
            first_stage = [(i, r) for i, r, row in zip(index, ratio, measured) if row["stage"] == 1]
            fits.append({"net": name, "depth": depth, "block_type": block, "setting": setting,
                         **fit_exponent(index, ratio),
                         "predicted_exponent": fit_exponent(index, predicted)["exponent"],
                         "first_stage_exponent": fit_exponent(*zip(*first_stage))["exponent"]
                         if len(first_stage) >= FIRST_FITTED_BLOCK + 1 else None})
        timings[name] = round(time.perf_counter() - net_start, 1)
        del model
    fits.sort(key=lambda f: (nets.index((f["depth"], f["block_type"])), SETTINGS.index(f["setting"])))
    meta = dict(nets=[f"{d}:{b}" for d, b in nets], version="v2", shortcut="identity",
                width_multiplier=width_multiplier, image_size=image_size, batch=len(x), seed=seed,
                data="digits, training split, standardised", first_fitted_block=FIRST_FITTED_BLOCK,
                backend=keras.backend.backend(), seconds_per_net=timings,
                seconds=round(time.perf_counter() - start, 1))
    json_path, png_path = os.path.join(out, JSON_FILE), os.path.join(out, PNG_FILE)
    fileio.write_json(json_path, {"meta": meta, "fits": fits, "rows": rows})
    plot_identity_bias(rows, fits, png_path,
                       title=f"||F(x)|| / ||x|| at initialisation, v2 ResNets (option A), width {width_multiplier:g}, "
                       f"{image_size}x{image_size} digits, batch {len(x)}")
    return {"rows": rows, "fits": fits, "meta": meta, "json": json_path, "png": png_path}


def plot_identity_bias(rows: list[dict], fits: list[dict], path: str | os.PathLike, title: str | None = None) -> None:
    """Ratio against block index on log-log axes: one panel per net, both settings, ``1 / sqrt(l)``.

    Args:
        rows: :func:`identity_bias`'s rows.
        fits: its fits (their exponents label the lines).
        path: the PNG's path, written atomically.
        title: optional figure title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    nets = list(dict.fromkeys(r["net"] for r in rows))
    if not nets:
        raise ValueError("rows must hold at least one measured block; received none")
    exponents = {(f["net"], f["setting"]): f["exponent"] for f in fits}
    fig = Figure(figsize=(5.5 * len(nets), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(nets), squeeze=False)[0]
    for ax, net in zip(axes, nets):
        last = 1
        for setting, colour in zip(SETTINGS, ("tab:blue", "tab:orange")):
            points = [(r["index"], r["ratio"]) for r in rows if r["net"] == net and r["setting"] == setting]
            if not points:
                continue
            last = max(last, points[-1][0])
            exponent = exponents.get((net, setting))
            label = SETTING_LABELS[setting] + (f": slope {exponent:.2f}" if exponent is not None else "")
            ax.plot(*zip(*points), marker=".", markersize=3, linewidth=1, color=colour, label=label)
            if setting == "batchnorm":
                counted = [(r["index"], r["predicted"]) for r in rows
                           if r["net"] == net and r["setting"] == setting and "predicted" in r]
                if counted:
                    ax.plot(*zip(*counted), linestyle=":", linewidth=1.5, color="black",
                            label="variance count (with BatchNorm)")
        ends = [1, last]
        ax.plot(ends, [end ** -0.5 for end in ends], linestyle="--", color="grey", label="1 / sqrt(l)")
        ax.set(xscale="log", yscale="log", xlabel="residual block l (network order)",
               ylabel="||F(x)|| / ||x||", title=net)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title, fontsize="medium")
    fileio.savefig(fig, path, dpi=80)
