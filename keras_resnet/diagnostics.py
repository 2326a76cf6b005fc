"""Measurements of residual behaviour per block: identity closeness, gradient norms, responses.

He et al., "Deep Residual Learning for Image Recognition" (arXiv:1512.03385) argues that a
residual block only has to learn a small correction ``F(x)`` to the identity, that shortcuts keep
deep networks trainable, and (Figure 7) that residual responses are small. These functions
measure that on a model and a batch, for a ResNet against its plain twin (``shortcut="none"``),
at initialisation or during training (:class:`DiagnosticsCallback`).

Each returns one row (a dict) per residual block in network order, with the keys ``block`` (the
layer name), ``stage`` and ``depth_index`` (1 for the first block). The network is run layer by
layer, which is exact for a ResNet: its functional graph is a chain (checked on each call).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import re

import keras
import numpy as np

from keras_resnet import fileio
from keras_resnet.blocks import ResidualBlock
from keras_resnet.defaults import BN_STATISTICS, DIAGNOSIS_DATASETS
from keras_resnet.validation import check_choice, check_int

# ---- running the chain ------------------------------------------------------------------

def _chain(model, top: bool = True) -> list:
    """The model's layers after its input, nested models expanded (see :func:`_checked_chain`)."""
    if not isinstance(model, keras.Model) or len(getattr(model, "inputs", None) or []) != 1:
        raise ValueError(f"diagnostics need a functional keras.Model with one input; received {model!r}")
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        layers += _chain(layer, top=False) if isinstance(layer, keras.Model) else [layer]
    if top and not any(isinstance(layer, ResidualBlock) for layer in layers):
        raise ValueError(f"model {model.name!r} has no residual blocks (keras_resnet.ResidualBlock layers)")
    return layers


def _checked_chain(model, x) -> list:
    """:func:`_chain`, checked to compute the model: run one after another in inference mode on
    a sample of ``x``, the layers must give the model's own output.

    Keras has no public API for the connections of a layer inside a graph, so the chain is
    checked by what it computes rather than by its edges.
    """
    layers = _chain(model)
    sample = x[:1]
    expected = np.asarray(model(sample, training=False), dtype="float64")
    try:
        h = keras.ops.convert_to_tensor(sample)
        for layer in layers:
            h = layer(h, training=False)
        got = np.asarray(h, dtype="float64")
        same = got.shape == expected.shape and np.allclose(
            got, expected, rtol=1e-3, atol=1e-5 * max(1.0, float(np.max(np.abs(expected), initial=0.0))))
    except Exception:  # a layer that takes several inputs, or another shape: not a chain
        same = False
    if not same:
        raise ValueError(
            f"diagnostics need a model whose layers form a chain, as a ResNet's do; the layers of "
            f"{model.name!r} run one after another do not compute the model's output"
        )
    return layers


def takes_raw_pixels(model) -> bool:
    """True when the model scales its own input (it has a Normalization or Rescaling layer)."""
    return any(isinstance(layer, (keras.layers.Normalization, keras.layers.Rescaling)) for layer in _chain(model))


def _check_x(model, x) -> np.ndarray:
    x = np.asarray(x, dtype="float32")
    expected = tuple(model.inputs[0].shape[1:])
    if len(x) < 1 or x.ndim != len(expected) + 1 or any(
        e is not None and e != d for e, d in zip(expected, x.shape[1:])
    ):
        raise ValueError(
            f"x must be a non-empty batch of shape (batch, {', '.join(map(str, expected))}) for "
            f"{model.name!r}; received an array of shape {x.shape}"
        )
    return x


@contextlib.contextmanager
def _kept_state(model, enabled: bool):
    """Restores BatchNorm's moving statistics, which ``training=True`` calls update."""
    saved = [(v, v.numpy()) for v in model.non_trainable_variables] if enabled else []
    try:
        yield
    finally:
        for variable, value in saved:
            variable.assign(value)


def _forward(model, x, training: bool, tape=None):
    """Runs the chain; returns ``(rows, blocks, block inputs, block outputs, model output)``."""
    with tape.stop_recording() if tape is not None else contextlib.nullcontext():
        layers = _checked_chain(model, x)
    h = keras.ops.convert_to_tensor(x)
    rows, blocks, inputs, outputs = [], [], [], []
    for layer in layers:
        if isinstance(layer, ResidualBlock):
            if tape is not None:
                tape.watch(h)
            stage = re.search(r"stage(\d+)", layer.name)
            rows.append({"block": layer.name, "stage": int(stage.group(1)) if stage else None,
                         "depth_index": len(blocks) + 1})
            blocks.append(layer)
            inputs.append(h)
            h = layer(h, training=training)
            outputs.append(h)
        else:
            h = layer(h, training=training)
    return rows, blocks, inputs, outputs, h


def _norm(a) -> float:
    return float(np.sqrt(np.sum(np.square(np.asarray(a), dtype="float64"))))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over the batch of each sample's cosine similarity (1 where both are zero)."""
    a, b = a.reshape(len(a), -1).astype("float64"), b.reshape(len(b), -1).astype("float64")
    scale = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    both_zero = ~a.any(axis=1) & ~b.any(axis=1)
    cos = np.where(scale > 0, np.sum(a * b, axis=1) / np.where(scale > 0, scale, 1.0), both_zero * 1.0)
    return float(np.mean(cos))


def _measure(model, x, training: bool) -> list[dict]:
    """Rows with ``reference``, ``residual_ratio``, ``cosine`` and ``response_std``."""
    x = _check_x(model, x)
    with _kept_state(model, training):
        rows, blocks, inputs, outputs, _ = _forward(model, x, training)
        for row, block, h, y in zip(rows, blocks, inputs, outputs):
            f = keras.ops.convert_to_numpy(block.residual_branch(h, training=training))
            h, y = keras.ops.convert_to_numpy(h), keras.ops.convert_to_numpy(y)
            if h.shape == y.shape:
                ref, kind = h, "input"
            elif block.resolved_shortcut != "none":
                ref, kind = keras.ops.convert_to_numpy(block.shortcut_branch(h, training=training)), "shortcut"
            else:  # what option A's parameter-free shortcut would carry: subsample, zero-pad
                ref = h[:, :: block.strides, :: block.strides, : y.shape[-1]]
                ref = np.pad(ref, [(0, 0)] * 3 + [(0, y.shape[-1] - ref.shape[-1])])
                kind = "subsampled input"
            ref_norm = _norm(ref)
            row.update(reference=kind, residual_ratio=_norm(f) / ref_norm if ref_norm else math.inf,
                       cosine=_cosine(y, ref), response_std=float(np.std(f, dtype="float64")))
    return rows


# ---- the measurements -------------------------------------------------------------------

def identity_closeness(model, x, training: bool = False) -> list[dict]:
    """How close each residual block is to the identity, on the batch ``x``.

    The ResNet paper's premise (Section 3.1): a block that should do nothing only has to drive
    its residual branch ``F`` to zero. ``residual_ratio`` is ``||F(x)|| / ||x||`` over the batch
    (0 for the identity) and ``cosine`` the mean cosine similarity between the block's output
    and input (1 for the identity). Where a block changes shape, ``x`` is replaced by the
    shortcut's output ``S(x)``, or for a plain block by the input subsampled by the stride and
    zero-padded to the new width (option A's map); ``reference`` says which. For a plain block,
    ``F(x)`` is the block's whole output.

    Args:
        model: a ResNet, or a functional model whose layers (ResidualBlocks among them) form a
            chain, possibly nested in a ``keras.Sequential``.
        x: array ``(batch, *model.input_shape[1:])``, scaled as the model expects.
        training: bool, default False. BatchNorm on batch statistics (as in training) instead
            of its moving statistics; the model is left unchanged.

    Returns:
        One dict per block in network order: ``block``, ``stage``, ``depth_index``,
        ``reference``, ``residual_ratio``, ``cosine``.

    Example:
    >>> import numpy as np; from keras_resnet import ResNet
    >>> model = ResNet.from_preset("resnet20", input_shape=(8, 8, 1), zero_init_residual=True)
    >>> {r["residual_ratio"] for r in identity_closeness(model, np.ones((2, 8, 8, 1)))}
    {0.0}
    """
    return [{k: v for k, v in r.items() if k != "response_std"} for r in _measure(model, x, training)]


def response_std(model, x, training: bool = False) -> list[dict]:
    """Standard deviation of each residual branch's output ``F(x)``: the ResNet paper's Figure 7.

    The paper plots the std of each 3x3 layer's response after BatchNorm, before the addition
    and non-linearity, and finds ResNets' smaller than plain nets' after training. Here the
    response is ``F(x)``: in a v1 block the last BatchNorm's output (so exactly 1 with batch
    statistics at initialisation), in a v2 block the last convolution's.

    Args and order of the rows: as :func:`identity_closeness`; rows hold ``block``, ``stage``,
    ``depth_index``, ``response_std``.

    Example:
    >>> import numpy as np; from keras_resnet import ResNet
    >>> model = ResNet.from_preset("resnet20", input_shape=(8, 8, 1), zero_init_residual=True)
    >>> response_std(model, np.ones((2, 8, 8, 1)))[0]["response_std"]
    0.0
    """
    keep = ("block", "stage", "depth_index", "response_std")
    return [{k: r[k] for k in keep} for r in _measure(model, x, training)]


def gradient_norms(model, x, y, training: bool = False, loss=None) -> list[dict]:
    """Norm of the loss gradient at each block's input and on each block's weights.

    The "gradient highway": a shortcut adds the identity to each block's Jacobian, so the
    gradient reaches early blocks without passing through every layer. The ResNet paper
    (Section 4.1) says its plain nets with BatchNorm keep healthy gradient norms too; compare a
    ResNet with its plain twin (:func:`compare`, :func:`gradient_summary`) to see which holds.

    Args:
        model: a ResNet with a classifier (see :func:`identity_closeness`).
        x: a batch, scaled as the model expects.
        y: integer class labels, one per sample.
        training: bool, default False. BatchNorm on batch statistics. A fresh model's moving
            statistics are 0 and 1, so inference mode then measures a network whose BatchNorms
            do not normalise; training mode measures what the first SGD step sees.
        loss: optional ``loss(y_true, y_pred) -> scalar``; default the mean sparse categorical
            cross-entropy (from logits if the classifier has no activation).

    Returns:
        One dict per block, in network order: ``block``, ``stage``, ``depth_index``,
        ``grad_norm`` (norm over the batch of dLoss/d(block input)) and ``weight_grad_norm``
        (over the block's trainable weights).

    Example:
    >>> import numpy as np; from keras_resnet import ResNet
    >>> model = ResNet.from_preset("resnet20", input_shape=(8, 8, 1))
    >>> rows = gradient_norms(model, np.random.normal(size=(4, 8, 8, 1)), [0, 1, 2, 3])
    >>> all(r["grad_norm"] > 0 for r in rows)
    True
    """
    x = _check_x(model, x)
    y = np.asarray(y)
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"y must hold one integer class label per sample ({len(x)}); received an array of "
            f"shape {y.shape} and dtype {y.dtype}"
        )
    if keras.backend.backend() == "jax":
        rows, at_inputs, on_weights = _jax_gradients(model, x, y, training, loss)
    else:
        import tensorflow as tf

        loss = loss or _default_loss(model)
        with _kept_state(model, training), tf.GradientTape() as tape:
            rows, blocks, inputs, _, out = _forward(model, x, training, tape=tape)
            value = loss(tf.convert_to_tensor(y), out)
        at_inputs, on_weights = tape.gradient(value, [inputs, [b.trainable_variables for b in blocks]])
    for row, g_in, g_w in zip(rows, at_inputs, on_weights):
        row.update(grad_norm=_norm(g_in), weight_grad_norm=math.hypot(*(_norm(g) for g in g_w if g is not None)))
    return rows


def _jax_gradients(model, x, y, training: bool, loss):
    """:func:`gradient_norms`' gradients on JAX: the chain as a pure function of zero offsets
    added to each block's input (the gradient at an offset is the gradient at that input) and
    of the blocks' trainable weights, differentiated by ``jax.grad``. The layers run through
    ``stateless_call``, so BatchNorm's moving statistics are left as they were.

    The default loss of a softmax classifier is computed from its logits, as TensorFlow's
    cross-entropy does when it finds the softmax's input (JAX arrays do not carry it): from the
    probabilities, samples whose true class gets less than 1e-7 would have no gradient.
    """
    import jax

    rows, blocks, inputs, _, _ = _forward(model, x, training=False)
    layers = _chain(model)
    last = layers[-1]
    logits_loss = loss is None and isinstance(last, keras.layers.Dense) and last.activation is keras.activations.softmax
    loss = loss or _default_loss(model)
    if logits_loss:
        layers, loss = layers[:-1], _logits_loss(last)
    offsets = [keras.ops.zeros_like(h) for h in inputs]
    weights = [[v.value for v in b.trainable_variables] for b in blocks]
    y = keras.ops.convert_to_tensor(y)

    # stateless_call passes its keyword arguments on to call(), which may not take training.
    modes = [{"training": training} if "training" in inspect.signature(layer.call).parameters else {}
             for layer in layers]

    def run(offsets, weights):
        h, i = keras.ops.convert_to_tensor(x), 0
        for layer, mode in zip(layers, modes):
            frozen = [v.value for v in layer.non_trainable_variables]
            if isinstance(layer, ResidualBlock):
                h, _ = layer.stateless_call(weights[i], frozen, h + offsets[i], **mode)
                i += 1
            else:
                h, _ = layer.stateless_call([v.value for v in layer.trainable_variables], frozen, h, **mode)
        return loss(y, h)

    at_inputs, on_weights = jax.grad(run, argnums=(0, 1))(offsets, weights)
    return rows, at_inputs, on_weights


def _logits_loss(dense):
    """The mean sparse cross-entropy of a softmax ``Dense`` layer's logits, from its input."""

    def loss(y_true, h):
        logits = keras.ops.matmul(h, dense.kernel.value)
        if dense.use_bias:
            logits = logits + dense.bias.value
        return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y_true, logits, from_logits=True))

    return loss


def _default_loss(model):
    last = _chain(model)[-1]
    if not isinstance(last, keras.layers.Dense):
        raise ValueError(
            f"gradient_norms needs a classifier output (include_top=True) or a loss; the last "
            f"layer of {model.name!r} is {type(last).__name__} {last.name!r}"
        )
    logits = last.activation in (None, keras.activations.linear)

    def loss(y_true, y_pred):
        return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=logits))

    return loss


def diagnose(model, x, y=None, training: bool = False) -> list[dict]:
    """All three measurements in one row per block; the gradient columns only with ``y``.

    Example:
    >>> import numpy as np; from keras_resnet import ResNet
    >>> model = ResNet.from_preset("resnet20", input_shape=(8, 8, 1))
    >>> sorted(diagnose(model, np.ones((2, 8, 8, 1)), [0, 1])[0])[:3]
    ['block', 'cosine', 'depth_index']
    """
    rows = _measure(model, x, training)
    if y is not None:
        for row, grads in zip(rows, gradient_norms(model, x, y, training=training)):
            row.update(grads)
    return rows


def gradient_summary(rows: list[dict]) -> dict:
    """The first block's gradient norm against the last's, per block and per stage mean.

    ``first_over_last`` > 1: the gradient grows towards the input (explodes when huge);
    < 1: it shrinks (vanishes when tiny). ``first_stage_over_last_stage`` compares the means
    of the first and last stages.
    """
    stages = [r["stage"] for r in rows]

    def mean(stage):
        return float(np.mean([r["grad_norm"] for r in rows if r["stage"] == stage]))

    first, last = mean(stages[0]), mean(stages[-1])
    return {"first_block": rows[0]["grad_norm"], "last_block": rows[-1]["grad_norm"],
            "first_over_last": rows[0]["grad_norm"] / rows[-1]["grad_norm"],
            "first_stage_mean": first, "last_stage_mean": last, "first_stage_over_last_stage": first / last}


# ---- ResNet against its plain twin ------------------------------------------------------

def plain_twin(model, seed: int | None = None):
    """A freshly initialised copy of a ResNet without shortcuts (``shortcut="none"``).

    Args:
        model: a :class:`keras_resnet.models.ResNet`.
        seed: None (default) leaves the process's random generators alone; an integer first
            calls ``keras.utils.set_random_seed(seed)``, which re-seeds Python's, NumPy's and
            the backend's global generators. Seeded like the ResNet and with option-A
            shortcuts (which have no weights), the twin starts from exactly the ResNet's
            initial weights.
    """
    from keras_resnet.models import ResNet

    if not isinstance(model, ResNet):
        raise ValueError(f"a plain twin needs a keras_resnet.ResNet; received {type(model).__name__}")
    name = model.name.replace("resnet", "plain", 1) if model.name.startswith("resnet") else f"{model.name}_plain"
    if seed is not None:
        keras.utils.set_random_seed(seed)
    return ResNet.from_config({**model.get_config(), "shortcut": "none", "zero_init_residual": False,
                               "drop_path_rate": 0.0, "name": name})


def compare(model_or_preset, x, y=None, plain: bool = True, seed: int | None = None, training: bool = False,
            **overrides) -> dict[str, list[dict]]:
    """Diagnoses a ResNet and its plain twin on the same batch: ``{model name: rows}``.

    Args:
        model_or_preset: a preset name (built with ``overrides``) or a model; a ResNet's twin
            is freshly initialised.
        x: a batch, scaled as the model expects.
        y: optional integer labels (for the gradient columns).
        plain: bool, default True. Also diagnose the plain twin (of a ResNet with shortcuts).
        seed: None (default) leaves the process's random generators alone; an integer calls
            ``keras.utils.set_random_seed(seed)`` (Python's, NumPy's and the backend's global
            generators) before building the preset and again before its twin, which then
            start from the same weights.
        training: bool, default False. BatchNorm on batch statistics.
        **overrides: ``ResNet`` arguments for a preset, e.g. ``input_shape``, ``classes``.

    Example:
    >>> import numpy as np
    >>> results = compare("resnet20", np.ones((2, 8, 8, 1)), [0, 1], depth=8, input_shape=(8, 8, 1))
    >>> list(results)
    ['resnet8', 'plain8']
    """
    from keras_resnet.models import ResNet

    if isinstance(model_or_preset, str):
        if seed is not None:
            keras.utils.set_random_seed(seed)
        model = ResNet.from_preset(model_or_preset, **overrides)
    elif overrides:
        raise ValueError(f"overrides apply to preset names only; received {sorted(overrides)} with a model")
    else:
        model = model_or_preset
    results = {model.name: diagnose(model, x, y, training=training)}
    if plain and isinstance(model, ResNet) and model.shortcut != "none":
        twin = plain_twin(model, seed=seed)
        results[twin.name] = diagnose(twin, x, y, training=training)
    return results


# ---- output -----------------------------------------------------------------------------

def write_json(data, path) -> None:
    """Writes ``data`` as JSON, atomically; non-finite floats become null (JSON has no NaN)."""

    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, (float, np.floating)):
            return float(v) if math.isfinite(v) else None
        return int(v) if isinstance(v, np.integer) else v

    fileio.write_text(path, json.dumps(clean(data), indent=2) + "\n")


PANELS = (
    ("residual_ratio", "||F(x)|| / ||x||  (0: identity)", "linear"),
    ("cosine", "cosine(block output, input)  (1: identity)", "linear"),
    ("grad_norm", "||dLoss / d(block input)||", "log"),
    ("response_std", "std of F(x)  (ResNet paper, Fig. 7)", "linear"),
)


def plot_diagnostics(results: dict[str, list[dict]], path, title: str | None = None) -> None:
    """Plots each measurement against block depth, one line per model, into a PNG (atomically).

    Args:
        results: ``{label: rows}``, as :func:`compare` returns.
        path: the PNG's path.
        title: optional figure title.

    Example:
    >>> import numpy as np
    >>> results = compare("resnet20", np.ones((2, 8, 8, 1)), [0, 1], depth=8, input_shape=(8, 8, 1))
    >>> plot_diagnostics(results, "diagnostics.png")
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not results or not all(results.values()):
        raise ValueError(f"results must map labels to non-empty lists of rows; received {list(results)}")
    fig = Figure(figsize=(11, 7), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (key, label, scale) in zip(fig.subplots(2, 2).ravel(), PANELS):
        for name, rows in results.items():
            points = [(r["depth_index"], r[key]) for r in rows if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), marker=".", label=name)
        ax.set(xlabel="residual block (network order)", title=label)
        if not ax.has_data():
            continue
        if scale == "log" and all(v > 0 for line in ax.lines for v in line.get_ydata()):
            ax.set_yscale("log")
        elif scale == "linear":
            low, high = min(0.0, ax.get_ylim()[0]), ax.get_ylim()[1]  # from 0, the identity's ratio
            ax.set_ylim(low, high + 0.05 * (high - low))
        ax.legend()
    if title:
        fig.suptitle(title)
    fileio.savefig(fig, path, dpi=100)


# ---- during training --------------------------------------------------------------------

class DiagnosticsCallback(keras.callbacks.Callback):
    """Records :func:`diagnose` rows on a fixed batch every ``every`` epochs.

    Args:
        x: a fixed batch, scaled as the model expects; y: optional integer labels (adds the
            gradient columns).
        every: int, default 1. Record after every ``every``-th epoch.
        out: optional path of a JSON file, rewritten atomically with the whole history.
        training: bool, default False. BatchNorm on batch statistics.

    Attributes:
        history: list of ``{"epoch": epochs completed, "logs": {...}, "blocks": rows}``.

    Example:
    >>> from keras_resnet import ResNet
    >>> model = ResNet(depth=8, input_shape=(8, 8, 1), classes=3)
    >>> model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    >>> x, y = np.random.default_rng(0).normal(size=(8, 8, 8, 1)), np.arange(8) % 3
    >>> callback = DiagnosticsCallback(x[:4], y[:4], out="diagnostics.json")
    >>> _ = model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[callback])
    >>> [entry["epoch"] for entry in callback.history], len(callback.history[0]["blocks"])
    ([1, 2], 3)
    """

    def __init__(self, x, y=None, every: int = 1, out=None, training: bool = False):
        super().__init__()
        every = check_int("every", every, 1)
        self.x = np.asarray(x, dtype="float32")
        self.y = None if y is None else np.asarray(y)
        self.every, self.out, self.training = every, out, bool(training)
        self.history: list[dict] = []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        rows = diagnose(self.model, self.x, self.y, training=self.training)
        logs = {k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0}
        self.history.append({"epoch": epoch + 1, "logs": logs, "blocks": rows})
        if self.out:
            write_json({"model": self.model.name, "history": self.history}, self.out)


def run_diagnosis(
    model,
    *,
    dataset: str = "random",
    batch: int = 32,
    seed: int = 0,
    set_global_seed: bool = False,
    bn_stats: str = "auto",
    plain: bool = True,
    out: str | os.PathLike = "runs/diagnose",
    **overrides,
) -> dict:
    """Diagnoses a preset (against its plain twin) or a saved model; writes a JSON and a plot.

    Args:
        model: a preset name (built with ``overrides`` and ``seed``) or a ``.keras`` path.
        dataset: ``"random"`` (seeded images) or ``"digits"`` (a batch of the training split).
        batch: images in the measured batch.
        seed: seeds the data (the random batch, or the digits' shuffle).
        set_global_seed: also call ``keras.utils.set_random_seed(seed)`` before building the
            preset and its twin, so that their weights are reproducible; this re-seeds
            Python's, NumPy's and the backend's global generators in the whole process. Off
            by default; the ``keras-resnet diagnose`` command turns it on.
        bn_stats: ``"batch"``, ``"moving"`` or ``"auto"`` (batch statistics for a fresh preset,
            whose moving statistics are still 0 and 1; moving statistics for a trained file).
        plain: also diagnose the plain twin of a ResNet.
        out: folder for ``diagnostics.json`` and ``diagnostics.png``.
        **overrides: ``ResNet`` arguments for a preset.

    Returns:
        ``{"results": {model name: rows}, "summary": [gradient summaries], "meta": {...},
        "json": path, "png": path}``.

    Example:
    >>> report = run_diagnosis("resnet20", depth=8, input_shape=(8, 8, 1), batch=4, out="diagnose")
    >>> list(report["results"]), os.path.basename(report["png"])
    (['resnet8', 'plain8'], 'diagnostics.png')
    """
    from keras_resnet.models import ResNet

    check_choice("dataset", dataset, DIAGNOSIS_DATASETS)
    check_choice("bn_stats", bn_stats, BN_STATISTICS)
    check_int("batch", batch, 1)
    check_int("seed", seed, 0)
    is_file = str(model).endswith(".keras")
    loaded = keras.saving.load_model(model) if is_file else None
    training = {"batch": True, "moving": False}.get(bn_stats, not is_file)
    data = x = y = None
    if dataset == "digits":
        from keras_resnet.data import load_dataset, preprocessing

        shape = loaded.input_shape[1:] if loaded is not None else overrides.get("input_shape")
        data = load_dataset("digits", image_size=shape[0] if shape else None, batch_size=batch, seed=seed, augment=False)
        if tuple(shape or data.input_shape) != tuple(data.input_shape):
            raise ValueError(f"the digits come as images of shape {tuple(data.input_shape)}; "
                             f"received a model input shape of {tuple(shape)}")
        x, y = (t.numpy() for t in next(iter(data.train)))
        overrides.update(input_shape=data.input_shape, classes=data.num_classes)
    if loaded is None:
        if set_global_seed:
            keras.utils.set_random_seed(seed)
        loaded = ResNet.from_preset(model, **overrides)
    raw = takes_raw_pixels(loaded)
    if x is None:
        rng = np.random.default_rng(seed)
        shape = (batch, *loaded.input_shape[1:])
        x = rng.uniform(0, 255, shape) if raw else rng.normal(size=shape)
        y = rng.integers(0, loaded.output_shape[-1], batch)
    elif not raw:
        x = keras.ops.convert_to_numpy(preprocessing(data)(x))
    results = compare(loaded, x, y, plain=plain, seed=seed if set_global_seed else None, training=training)
    summary = [{"model": name, **gradient_summary(rows)} for name, rows in results.items()]
    stats = "batch" if training else "moving"
    data_note = f"digits ({'raw pixels' if raw else 'standardised'})" if data else "random (seeded)"
    meta = dict(model=str(model), input_shape=list(loaded.input_shape[1:]), batch=len(x), seed=seed,
                data=data_note, bn_statistics=stats)
    json_path, png_path = os.path.join(out, "diagnostics.json"), os.path.join(out, "diagnostics.png")
    write_json({**meta, "summary": summary, "results": results}, json_path)
    plot_diagnostics(results, png_path, title=f"{' vs '.join(results)}: {data_note}, BatchNorm {stats} statistics")
    return {"results": results, "summary": summary, "meta": meta, "json": json_path, "png": png_path}
