"""The experiments' figures: training-error curves, shortcut bars, residual responses.

Each function takes the records that :mod:`keras_resnet.experiments` returns (or reads back
from ``results.json``) and writes a PNG atomically; matplotlib is imported inside the
functions (``keras-resnet --help`` does not pay for it), and only its object-oriented API is used
(no global pyplot state).
"""

from __future__ import annotations

import os

from keras_resnet import fileio


def _figure(width: float, height: float, columns: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, columns, squeeze=False)[0]


def _check_records(records, keys) -> list[dict]:
    records = list(records or [])
    if not records or any(not isinstance(r, dict) or not set(keys) <= set(r) for r in records):
        raise ValueError(f"records must be a non-empty list of dicts with the keys {', '.join(keys)}")
    return records


def _label(shortcut: str, version: str) -> str:
    return "plain" if shortcut == "none" else f"{shortcut}{' v2' if version == 'v2' else ''}"


def plot_degradation(records: list[dict], path: str | os.PathLike) -> None:
    """Training error against epochs, plain nets left and ResNets right (the paper's Figure 6).

    One curve per depth: the per-epoch training error of the history, the mean over seeds with
    a min-max band when there are several; a dot at the end marks the final training error in
    inference mode (``train_error``).

    Args:
        records: records as :func:`degradation` returns them.
        path: the PNG to write (atomically).

    Example:
    >>> plot_degradation(degradation(depths=(20, 56)), "degradation.png")  # doctest: +SKIP
    """
    import numpy as np

    records = _check_records(records, ("depth", "shortcut", "version", "seed", "train_error", "epoch_train_error"))
    panels = list(dict.fromkeys((r["shortcut"], r["version"]) for r in sorted(records, key=lambda r: r["shortcut"] != "none")))
    fig, axes = _figure(5.2 * len(panels), 4.2, len(panels))
    depths = sorted({r["depth"] for r in records})
    colors = {d: f"C{i}" for i, d in enumerate(depths)}
    for ax, (shortcut, version) in zip(axes, panels):
        for depth in depths:
            runs = [r for r in records if (r["shortcut"], r["version"], r["depth"]) == (shortcut, version, depth)]
            if not runs:
                continue
            n = min(len(r["epoch_train_error"]) for r in runs)
            curves = 100 * np.array([r["epoch_train_error"][:n] for r in runs])
            epochs = np.arange(1, n + 1)
            seeds = f", {len(runs)} seeds" if len(runs) > 1 else ""
            name = "plain" if shortcut == "none" else "ResNet"
            ax.plot(epochs, curves.mean(0), color=colors[depth], label=f"{name}-{depth}{seeds}")
            if len(runs) > 1:
                ax.fill_between(epochs, curves.min(0), curves.max(0), color=colors[depth], alpha=0.2)
            final = 100 * np.array([r["train_error"] for r in runs])
            ax.plot([n] * len(final), final, "o", color=colors[depth], markersize=4)
        kind = "plain" if shortcut == "none" else f"ResNet ({_label(shortcut, version)})"
        ax.set(xlabel="epoch", ylabel="training error (%)", title=kind)
        ax.grid(alpha=0.3)
        ax.legend()
    top = max(a.get_ylim()[1] for a in axes)
    for ax in axes:
        ax.set_ylim(0, top)
    fig.suptitle("Training error per epoch (lines: training mode; dots: final, inference mode)", fontsize=10)
    fileio.savefig(fig, path, dpi=90)


def plot_shortcuts(records: list[dict], path: str | os.PathLike) -> None:
    """Final training and test error per shortcut type (and version): bars of the mean over
    seeds, with each seed as a dot (the ResNet paper's Table 3 as a figure).

    Args:
        records: records as :func:`compare_shortcuts` returns them.
        path: the PNG to write (atomically).

    Example:
    >>> plot_shortcuts(compare_shortcuts(depth=20), "shortcuts.png")  # doctest: +SKIP
    """
    import numpy as np

    records = _check_records(records, ("shortcut", "version", "depth", "train_error", "test_error"))
    labels = list(dict.fromkeys(_label(r["shortcut"], r["version"]) for r in records))
    fig, (ax,) = _figure(max(5.0, 1.4 * len(labels) + 2), 4.0)
    x = np.arange(len(labels))
    for offset, key, color in ((-0.2, "train_error", "C0"), (0.2, "test_error", "C1")):
        values = [[100 * r[key] for r in records if _label(r["shortcut"], r["version"]) == lab] for lab in labels]
        means = [np.mean(v) for v in values]
        spread = np.array([[m - min(v), max(v) - m] for m, v in zip(means, values)]).T
        ax.bar(x + offset, means, 0.4, yerr=spread if any(len(v) > 1 for v in values) else None,
               color=color, alpha=0.8, capsize=3, label=key.replace("_", " "))
        for xi, v in zip(x, values):
            ax.plot([xi + offset] * len(v), v, "k.", markersize=4)
    params = {_label(r["shortcut"], r["version"]): r.get("params") for r in records}
    ax.set_xticks(x, [f"{lab}\n{params[lab]:,} params" if params[lab] else lab for lab in labels])
    depths = ", ".join(map(str, sorted({r["depth"] for r in records})))
    seeds = len({r.get("seed") for r in records})
    spread = f"mean of {seeds} seeds, whiskers min-max, dots each seed" if seeds > 1 else "one seed"
    ax.set(ylabel="error (%)", title=f"Depth {depths}: final errors by shortcut type\n({spread})")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    fileio.savefig(fig, path, dpi=90)


def plot_training_curves(records: list[dict], path: str | os.PathLike) -> None:
    """Training error and loss against epochs, one curve per net, all nets on the same axes (the
    pre-activation paper's Figure 1 and 6).

    Curves are the per-epoch history (training mode), the mean over seeds with a min-max band
    when there are several; a dot at the end marks the final training error in inference mode.
    The loss (cross-entropy plus the coupled weight decay, as Keras logs it) is on a log scale,
    where a net that does not learn stays flat.

    Args:
        records: records as :func:`very_deep` (or any experiment) returns them.
        path: the PNG to write (atomically).

    Example:
    >>> plot_training_curves(very_deep(width_multiplier=0.25), "very_deep.png")  # doctest: +SKIP
    """
    import numpy as np

    records = _check_records(records, ("depth", "shortcut", "version", "train_error", "epoch_train_error", "epoch_loss"))
    fig, axes = _figure(10.5, 4.0, 2)
    nets = list(dict.fromkeys((r["shortcut"], r["version"], r["depth"], r.get("block")) for r in records))
    for i, (shortcut, version, depth, block) in enumerate(nets):
        runs = [r for r in records if (r["shortcut"], r["version"], r["depth"], r.get("block")) == (shortcut, version, depth, block)]
        n = min(len(r["epoch_train_error"]) for r in runs)
        epochs = np.arange(1, n + 1)
        name = ("plain" if shortcut == "none" else "ResNet") + f"-{depth}" + (f" {version}" if shortcut != "none" else "")
        label = name + (f" ({block})" if block else "") + (f", {len(runs)} seeds" if len(runs) > 1 else "")
        for ax, key, scale in ((axes[0], "epoch_train_error", 100), (axes[1], "epoch_loss", 1)):
            curves = scale * np.array([r[key][:n] for r in runs])
            ax.plot(epochs, curves.mean(0), color=f"C{i}", marker=".", label=label)
            if len(runs) > 1:
                ax.fill_between(epochs, curves.min(0), curves.max(0), color=f"C{i}", alpha=0.2)
        final = 100 * np.array([r["train_error"] for r in runs])
        axes[0].plot([n] * len(final), final, "o", color=f"C{i}", markersize=5)
    axes[0].set(xlabel="epoch", ylabel="training error (%)", title="Training error (dots: final, inference mode)")
    axes[0].set_ylim(0, 100)
    axes[1].set(xlabel="epoch", ylabel="training loss", yscale="log", title="Training loss (with weight decay)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fileio.savefig(fig, path, dpi=90)


def plot_responses(rows: list[dict], path: str | os.PathLike) -> None:
    """Std of ``F(x)`` and ``||F(x)|| / ||x||`` by block, one curve per net and depth, mean over
    seeds (the ResNet paper's Figure 7; plain nets dashed, in the first panel only: their
    "F(x)" is the whole block).

    Args:
        rows: as :func:`residual_responses` returns them.
        path: the PNG to write (atomically).

    Example:
    >>> plot_responses(residual_responses("runs/degradation"), "responses.png")  # doctest: +SKIP
    """
    import numpy as np

    rows = _check_records(rows, ("depth", "shortcut", "version", "blocks"))
    fig, axes = _figure(11, 4.2, 2)
    groups = list(dict.fromkeys((r["shortcut"], r["version"], r["depth"]) for r in rows))
    depths = sorted({g[2] for g in groups})
    for shortcut, version, depth in groups:
        runs = [r["blocks"] for r in rows if (r["shortcut"], r["version"], r["depth"]) == (shortcut, version, depth)]
        style = "--" if shortcut == "none" else "-"
        name = f"{'plain' if shortcut == 'none' else 'ResNet'}-{depth}{' v2' if version == 'v2' else ''}"
        for ax, key in zip(axes, ("response_std", "residual_ratio")[: 1 if shortcut == "none" else 2]):
            values = np.mean([[b[key] for b in blocks] for blocks in runs], axis=0)
            ax.plot(np.arange(1, len(values) + 1), values, style, marker=".", markersize=3,
                    color=f"C{depths.index(depth)}", label=name)
    axes[0].set(xlabel="residual block (network order)", ylabel="std of F(x)", title="Response std (Fig. 7)")
    axes[1].set(xlabel="residual block (network order)", ylabel="||F(x)|| / ||x||", title="Residual against identity")
    for ax in axes:
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fileio.savefig(fig, path, dpi=90)
