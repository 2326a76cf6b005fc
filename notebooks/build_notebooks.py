"""Writes the user's-guide notebooks from the cells below; this file is their source.

    python notebooks/build_notebooks.py          # rewrite every notebook
    python notebooks/build_notebooks.py --check  # exit 1 if a notebook differs from this file

The notebooks are committed without outputs and with fixed cell ids, so that regenerating an
unchanged notebook changes nothing and a diff shows only what was edited. tests/test_notebooks.py
runs the check, then executes every notebook with ``KERAS_RESNET_SMALL=1``.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

RESNET = "[He et al. 2015, arXiv:1512.03385](https://arxiv.org/abs/1512.03385)"
PREACT = "[He et al. 2016, arXiv:1603.05027](https://arxiv.org/abs/1603.05027)"


def md(text: str):
    return new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str):
    return new_code_cell(textwrap.dedent(text).strip())


def setup(name: str, imports: str):
    """The first code cell of every notebook: the small-settings switch, the output folder."""
    return code(f'''
        import os
        import tempfile
        from pathlib import Path

        SMALL = os.environ.get("KERAS_RESNET_SMALL") == "1"  # tiny settings, as the test suite runs them
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow starts: hide its info lines
        # Small runs write into a temporary folder, full runs into runs/notebooks/ (ignored by git).
        OUT = Path(tempfile.mkdtemp(prefix="{name}-")) if SMALL else Path("runs/notebooks/{name}")
        VERBOSE = 0 if SMALL else 2  # Keras: silent, or one line per epoch

        {textwrap.indent(textwrap.dedent(imports).strip(), " " * 8).lstrip()}

        print("small settings" if SMALL else "full settings", "->", OUT)
    ''')


# ---- 00: quickstart ------------------------------------------------------------------------

QUICKSTART = [
    md(f"""
        # Quickstart: from install to an exported ResNet

        Ten cells: load data, train a CIFAR-style ResNet with the recipe of {RESNET}, try it, export
        it to a SavedModel and four TFLite files, and check every export against the Keras model.

        **Install** from a clone of the repository: `make demo` creates `.venv`, installs the package
        and runs the whole pipeline once; or `pip install -e .` into an environment of your own
        (Python 3.11, TensorFlow 2.21, Keras 3). For Jupyter: `.venv/bin/pip install jupyterlab`.

        With `KERAS_RESNET_SMALL=1` in the environment every notebook runs tiny settings in under a
        minute (the test suite does this). Without it this one trains ResNet-20 on 16x16 digits for
        30 epochs: about a minute of training on 2 CPU cores, about 99% test accuracy.
    """),
    setup("00_quickstart", """
        BASE = OUT / "saved_models" if SMALL else Path("runs/notebooks/saved_models")  # exports land here

        from keras_resnet.console import print_table
        from keras_resnet.data import load_dataset
        from keras_resnet.pipeline import export_trained
        from keras_resnet.training import TrainConfig, train
    """),
    code("""
        # scikit-learn's 1,797 handwritten digits: offline, split 1,293 / 144 / 360 (train / validation / test).
        # The pipelines yield raw pixels (0-255); the model normalises them itself.
        data = load_dataset("digits", image_size=8 if SMALL else 16)
        print(data.input_shape, data.num_classes, "classes:", data.train_count, data.validation_count, data.test_count)
    """),
    md("""
        `train` uses the paper's recipe: SGD with momentum 0.9, learning rate 0.1 per 128 images
        (after a short warm-up at a tenth of it), divided by 10 at 50% and 75% of training, weight
        decay 1e-4, pad-and-crop augmentation. It keeps the epoch with the best validation accuracy
        and writes `model.keras`, `history.csv`, `curves.png` and `metrics.json` into `out`; called
        again after a crash it resumes (here `overwrite=True` trains afresh on every run).
    """),
    code("""
        depth = 8 if SMALL else 20
        config = TrainConfig(epochs=8 if SMALL else 30)
        result = train("resnet20", data, config, out=OUT / f"resnet{depth}", depth=depth, overwrite=True, verbose=VERBOSE,
                       set_global_seed=True)  # config.seed also seeds the initial weights
        print(f"{result.metrics['model']}: test accuracy {result.metrics['test_accuracy']:.3f}, "
              f"{result.metrics['params']:,} parameters, {result.metrics['seconds']:.0f} s")
    """),
    code("""
        from IPython.display import Image

        Image(str(result.out / "curves.png"))
    """),
    code("""
        images, labels = next(iter(data.test))
        probabilities = result.model.predict(images[:16], verbose=0)
        print("true:     ", labels[:16].numpy())
        print("predicted:", probabilities.argmax(axis=1))
    """),
    md("""
        `export_trained` writes a SavedModel in TF Serving's layout (`BASE/NAME/VERSION/`) and TFLite
        files with builtin ops only (float32, float16, dynamic-range and full-integer int8, calibrated
        on training images), checks each against the Keras model on the 360 test digits, and keeps
        only what passes. [04_export_and_deploy](04_export_and_deploy.ipynb) serves and runs them.
    """),
    code("""
        report = export_trained(result.model, "quickstart", base=BASE, dataset="digits")
        print_table(report, ["format", "path", "size_bytes", "top1_agreement", "accuracy", "latency_ms", "passed"])
        print(f"\\nserve them over TF Serving's REST API: keras-resnet serve {BASE.resolve()}")
    """),
    md("""
        Next: [01_residual_blocks](01_residual_blocks.ipynb) (what is inside the model),
        [02_degradation](02_degradation.ipynb) (why residual learning works, measured),
        [03_search](03_search.ipynb) (depth x shortcut type with KerasTuner). From a shell:
        `keras-resnet train --out runs/r20`, `keras-resnet export runs/r20/model.keras --name digits
        --tflite float32 int8 --dataset digits`, `keras-resnet serve saved_models`.
    """),
]


# ---- 01: residual blocks -------------------------------------------------------------------

BLOCKS = [
    md(f"""
        # Residual blocks

        **Why deep plain networks degrade.** Extra layers should never make a network worse on its
        own training data: the deeper net could copy a shallower one and let the extra layers pass
        their input through. Yet {RESNET} found exactly that (Figures 1 and 6): plain CIFAR-10 nets of
        20 to 56 layers, trained alike, end with *higher training error* the deeper they are. That is
        not overfitting, and with BatchNorm it is not vanishing signals either (Section 4.1): the
        solver does not find the "copy, then pass through" solution, because making a stack of
        convolutions, BatchNorms and ReLUs reproduce its input is hard to learn.

        **What a residual block changes.** It outputs `y = F(x) + x`: its layers learn only a
        correction `F` to the identity, and `x` travels on a shortcut. Doing nothing now means
        driving `F` to zero, which is easy, and the gradient reaches earlier blocks along the `+ x`
        path without crossing every layer in between. Where a block changes the shape of its input,
        the shortcut has to change it too: that is the *shortcut type* compared below.
        {PREACT} moved BatchNorm and ReLU in front of the convolutions (`version="v2"`, full
        pre-activation) so that nothing at all sits on the identity path from the first block to the
        last.

        This notebook builds blocks and looks inside them; [02_degradation](02_degradation.ipynb)
        measures the degradation.
    """),
    setup("01_residual_blocks", """
        import importlib.util
        import shutil

        import keras
        import numpy as np
        from IPython.display import Image, display

        from keras_resnet import BasicBlock, BottleneckBlock, ResNet, experiments, identity_closeness
        from keras_resnet.console import print_table
    """),
    md("""
        ## Identity and convolutional blocks

        `BasicBlock` is the paper's two-3x3-convolution block (Figure 2), `BottleneckBlock` its
        1x1-3x3-1x1 block for deep nets (Figure 5; it outputs four times its width). Both are ordinary
        Keras layers. An *identity block* keeps the shape of its input, so its shortcut is `x`
        itself. A *convolutional block* changes it (below: stride 2, 16 to 32 channels) and its
        shortcut is a 1x1 convolution with BatchNorm (`shortcut="projection"`). The layers inside a
        block have stable names (`conv1`, `bn1`, ..., `shortcut_conv`), and `residual_branch(x)` and
        `shortcut_branch(x)` return the two paths separately.
    """),
    code("""
        inputs = keras.Input((16, 16, 16), name="features")
        x = BasicBlock(16, shortcut="identity", name="identity_block")(inputs)
        x = BasicBlock(32, strides=2, shortcut="projection", name="conv_block")(x)
        x = BottleneckBlock(8, version="v2", name="bottleneck_v2")(x)  # 8 wide, 32 out: an identity block
        blocks = keras.Model(inputs, x, name="three_blocks")
        blocks.summary()
        for block in blocks.layers[1:]:
            branch = [layer.name for layer in block.preact_layers + block.branch_layers]
            shortcut = [layer.name for layer in block.shortcut_layers] or ["x (identity)"]
            print(f"{block.name:15} F(x): {' -> '.join(branch)}\\n{'':15} shortcut: {' -> '.join(shortcut)}")
    """),
    code("""
        # keras.utils.plot_model needs pydot (pip install pydot) and Graphviz's `dot` program.
        if importlib.util.find_spec("pydot") and shutil.which("dot"):
            display(keras.utils.plot_model(blocks, to_file=str(OUT / "blocks.png"), show_shapes=True, dpi=72))
        else:
            print("No diagram: install pydot and Graphviz to draw one; the summary above shows the same graph.")
    """),
    md("""
        ## A zero-initialised block starts as the identity

        With `zero_init=True` the last layer of the residual branch starts at zero: the gamma of the
        last BatchNorm in a v1 block, the kernel of the last convolution in a v2 block (which has no
        BatchNorm at the end of its branch). Then `F(x) = 0` for every input and the block is the
        identity: exactly in v2, where nothing follows the addition; in v1 the ReLU after the
        addition gives `relu(x)`, which is `x` for the non-negative activations a v1 block receives.
        A network of such blocks starts as little more than its stem and classifier, and training
        moves each block away from the identity only as far as that helps. Goyal et al.
        ([arXiv:1706.02677](https://arxiv.org/abs/1706.02677)) use this "zero gamma" start for
        large-batch training; here it is `zero_init=True` on a block, `zero_init_residual=True` on a
        `ResNet`.
    """),
    code("""
        rng = np.random.default_rng(0)
        x = np.maximum(rng.normal(size=(4, 8, 8, 16)), 0).astype("float32")  # non-negative, as after a ReLU
        for block in (BasicBlock(16, zero_init=True), BasicBlock(16, version="v2", zero_init=True),
                      BottleneckBlock(4, version="v2", zero_init=True)):
            y = block(x)
            print(f"{type(block).__name__:15} {block.version}: max |F(x)| = {np.abs(block.residual_branch(x)).max():.1e}, "
                  f"max |y - x| = {np.abs(y - x).max():.1e}")
    """),
    md("""
        The same holds for a whole network. `identity_closeness` runs a batch through a ResNet-20 and
        reports, per block, `||F(x)|| / ||x||` (0 for the identity) and the cosine between a block's
        output and its input (1 for the identity); on the two blocks that change shape, `x` is what
        the shortcut carries. With the default initialisation each branch adds a signal about as large
        as its input; with `zero_init_residual=True` none does.
    """),
    code("""
        images = rng.normal(size=(32, 8, 8, 1)).astype("float32")
        default, zero = (identity_closeness(ResNet.from_preset("resnet20", input_shape=(8, 8, 1), zero_init_residual=z),
                                            images, training=True) for z in (False, True))
        print_table([{"block": d["block"], "ratio (default)": d["residual_ratio"], "ratio (zero init)": z["residual_ratio"],
                      "cosine (default)": d["cosine"], "cosine (zero init)": z["cosine"]} for d, z in zip(default, zero)])
    """),
    md(f"""
        ## Shortcut types

        Where a block halves the map and doubles the channels, the shortcut must change shape as
        well. The ResNet paper (Section 3.3, Table 3) compares three ways, and a fourth is no shortcut:

        - **A, `"identity"`**: no parameters; keep every second pixel and pad the new channels with zeros.
        - **B, `"projection"`**: a 1x1 convolution with BatchNorm on the blocks that change shape only.
        - **C, `"full_projection"`**: a 1x1 convolution on every block.
        - **`"none"`**: the plain network, `y = F(x)`.

        On ImageNet (ResNet-34, 10-crop top-1 error) A, B and C reach 25.03%, 24.52% and 24.19%
        against 28.54% for plain-34: each of them removes the degradation, and projections add
        little, so the paper's CIFAR nets use A. The table builds the paper's CIFAR ResNet-20 (32x32x3,
        10 classes) with each type. With A it has exactly the 269,722 trainable parameters of the
        paper's "0.27M" (Table 6), the same as its plain twin; B adds 2,752 in its two projections
        (272,474). Keras's `count_params()` also counts BatchNorm's moving statistics.
        At greater depth the shortcut matters more: in {PREACT} (Table 1) a 110-layer CIFAR-10 net
        reaches 6.61% test error with identity shortcuts, but 12.22% with a 1x1 convolution on every
        shortcut and 12.35% (or no convergence) with shortcuts scaled by 0.5.
    """),
    code("""
        rows = []
        for shortcut in ("identity", "projection", "full_projection", "none"):
            model = ResNet.from_preset("resnet20", shortcut=shortcut)
            kinds = [row["kind"] for row in model.block_table()]
            rows.append({"shortcut": shortcut, "params": model.count_params(),
                         "trainable": sum(int(np.prod(w.shape)) for w in model.trainable_weights),
                         "MACs (M)": model.count_macs() / 1e6,
                         "convolutional blocks": kinds.count("convolutional block"),
                         "identity blocks": sum(kind.startswith("identity") for kind in kinds)})
        print_table(rows)
        model.summary()  # the plain twin: every block is a plain block
    """),
    md("""
        ## Trained side by side

        `experiments.compare_shortcuts` trains one depth with each shortcut type on the same data,
        recipe and seed (the paper's Table 3 in miniature; `versions=("v1", "v2")` adds the
        pre-activation blocks). The full settings train a 32-layer net on 8x8 digits for 20 epochs
        per shortcut type, a few minutes on 2 CPU cores; the small settings train 8 layers for one
        epoch, which only shows the mechanics. The same from a shell:
        `keras-resnet shortcuts --depth 32 --out runs/shortcuts`. Rerunning reuses finished runs.
    """),
    code("""
        records = experiments.compare_shortcuts("digits", depth=8 if SMALL else 32, epochs=1 if SMALL else None,
                                                out=OUT / "shortcuts", verbose=VERBOSE, set_global_seed=True)
        print_table([{"run": r["run"], "params": r["params"], "train error %": 100 * r["train_error"],
                      "test error %": 100 * r["test_error"], "seconds": r["seconds"]} for r in records])
        Image(str(OUT / "shortcuts" / "shortcuts.png"))
    """),
]


# ---- 02: degradation -----------------------------------------------------------------------

DEGRADATION = [
    md(f"""
        # The degradation problem, measured

        {RESNET} shows the problem in two figures. Figure 1: on CIFAR-10 a 56-layer plain net has
        higher training *and* test error than a 20-layer one. Figure 6: plain nets of 20, 32, 44 and
        56 layers end with training error that rises with depth (plain-110 stays above 60%), while
        ResNets of the same depths end lower the deeper they are; their test errors (Table 6) go from
        8.75% (ResNet-20) to 6.97% (ResNet-56) and 6.43% (ResNet-110). The paper gives the
        degradation as curves only.

        Here the same comparison runs on scikit-learn's 8x8 digits, offline and small enough for a
        CPU. Each depth is trained twice, as a plain net and as its ResNet twin with option-A
        shortcuts, so both have the same parameters and start from the same weights; recipe, data
        order and seed are shared. The full settings (depths 20 to 56, 20 epochs each) take about ten
        minutes on 2 CPU cores. Expect the plain nets' final training error to climb from about 0%
        at 20 layers to tens of percent at 44 and 56, and every ResNet to reach about 0%. The plain
        numbers move a lot with the seed and details of the recipe (hand-written nets with projection
        shortcuts left plain-56 at 29% and plain-20 at 0.07% during development); `seeds=(0, 1, 2)`
        shows the spread.
        The small settings (depths 8 and 14, 2 epochs) are far too short to show the effect; they
        only run the cells.
    """),
    setup("02_degradation", """
        import json

        import numpy as np
        from IPython.display import Image

        from keras_resnet import diagnostics, experiments
        from keras_resnet.console import print_table
        from keras_resnet.data import load_dataset, preprocessing

        DEPTHS = (8, 14) if SMALL else (20, 32, 44, 56)
        EPOCHS = 2 if SMALL else 20
    """),
    md("""
        ## Plain nets against ResNets

        `experiments.degradation` trains every run with `keras_resnet.training.train` in its own
        folder under `OUT/degradation/runs/` and reads finished runs back, so an interrupted
        experiment continues where it stopped. The recipe is the paper's with three adjustments for
        a dataset of about 11 batches per epoch: a warm-up at a tenth of the learning rate for the
        first 10% of training (without it a deep ResNet can stall at 0.1); BatchNorm momentum 0.9
        instead of Keras's 0.99, so that the moving statistics used at inference keep up with the
        weights; and no pad-and-crop augmentation, since one pixel is an eighth of an 8x8 digit
        (`augment=True` turns it on; CIFAR-10 keeps it). From a shell:
        `keras-resnet degradation --out runs/degradation`.
    """),
    code("""
        records = experiments.degradation("digits", depths=DEPTHS, epochs=EPOCHS, out=OUT / "degradation", verbose=VERBOSE,
                                          set_global_seed=True)
        print_table([{"run": r["run"], "params": r["params"], "train error %": 100 * r["train_error"],
                      "test error %": 100 * r["test_error"], "seconds": r["seconds"]} for r in records])
    """),
    code("""
        Image(str(OUT / "degradation" / "degradation.png"))
    """),
    md("""
        Read it next to the paper's Figure 6: plain nets on the left, ResNets on the right, one line
        per depth. The lines are the running training error of each epoch (BatchNorm in training
        mode); the dot at the end is the final training error in inference mode on the whole
        training set, the quantity the degradation is about. With the full settings the
        plain lines fan out upwards with depth, plain-56 far above plain-20, while the ResNet lines
        fall together to zero. The paper's figure also draws test error (its bold lines); here the
        table above has it.
    """),
    md("""
        ## Residual responses (Figure 7)

        The paper also measures how much each layer changes the signal: the standard deviation of
        each 3x3 layer's response after BatchNorm, before the addition. ResNets' responses are smaller
        than plain nets', and the deeper the ResNet the smaller they get: each block of a deep ResNet
        makes only a small correction. `experiments.degradation` measures this on the trained nets
        (`experiments.residual_responses`): per block the std of `F(x)` and, for ResNets,
        `||F(x)|| / ||x||`, on test images in inference mode. On digits the std stays near 1 in
        every ResNet block and most plain ones (the last BatchNorm of each branch sees to that), while `||F(x)|| / ||x||` falls
        clearly with depth: with the full settings a ResNet-56 block changes its input about half as
        much as a ResNet-20 block.
    """),
    code("""
        responses = json.loads((OUT / "degradation" / "responses.json").read_text())["runs"]
        print_table([{key: r[key] for key in ("run", "mean_response_std", "mean_residual_ratio")} for r in responses])
        Image(str(OUT / "degradation" / "responses.png"))
    """),
    md("""
        ## The diagnostics at initialisation: gradient norms and identity closeness

        Why does the shortcut help the optimiser? `diagnostics.compare` builds a ResNet and its plain
        twin from the same initial weights and measures, per block, on one batch of digits:

        - `grad_norm`: the norm of the loss gradient at the block's input. A shortcut adds the
          identity to each block's Jacobian, so the gradient can reach early blocks without passing
          through every layer.
        - `residual_ratio` and `cosine`: how far a block moves its input (`||F(x)|| / ||x||`, and
          the cosine between output and input; for a plain block `F(x)` is its whole output).
        - `response_std`: the std of `F(x)`, as in Figure 7. At initialisation it is exactly 1 in
          every v1 block, whose branch ends in a BatchNorm; it says something only after training.

        BatchNorm uses batch statistics here (`training=True`): a fresh model's moving statistics are
        0 and 1 and would not normalise anything. The paper (Section 4.1) says its plain nets with
        BatchNorm have healthy gradient norms, and indeed nothing vanishes; at initialisation the
        plain net's gradient *grows* towards the input instead, by a factor that explodes with depth
        (in the thousands at 56 layers with the full settings), while the ResNet's grows far less and
        its deeper blocks stay close to the identity (cosine near 1). A ResNet starts out close to a
        shallow network and learns to use its depth; a plain net starts as a deep composition whose
        every block scrambles its input.
        From a shell: `keras-resnet diagnose resnet56 --dataset digits --input-shape 8 8 1`.
    """),
    code("""
        data = load_dataset("digits", image_size=8, batch_size=128, augment=False)
        images, labels = next(iter(data.train))
        x, y = preprocessing(data)(images).numpy(), labels.numpy()  # a bare ResNet takes standardised images
        results = diagnostics.compare("resnet20", x, y, training=True, depth=DEPTHS[-1],
                                      input_shape=data.input_shape, classes=data.num_classes)
        print_table([{"model": name, **diagnostics.gradient_summary(rows)} for name, rows in results.items()],
                    ["model", "first_block", "last_block", "first_over_last"])
        diagnostics.plot_diagnostics(results, OUT / "diagnostics.png", title=f"{' vs '.join(results)} at initialisation")
        Image(str(OUT / "diagnostics.png"))
    """),
    md("""
        ## The CIFAR-10 version, on a GPU

        The same functions run the paper's own setting. `load_dataset("cifar10")` gets CIFAR-10
        through TensorFlow Datasets (about 160 MB, once, into `~/tensorflow_datasets`; on a machine
        without internet, run `tfds build cifar10 --data_dir DIR` elsewhere, copy `DIR`, and pass
        `--data-dir DIR`). For any dataset other than digits the defaults are the paper's: native
        32x32 images, 182 epochs (the paper's 64k iterations of 128 images on its 45k-image training
        split), learning rate 0.1 divided by 10
        at 50% and 75%, pad-4 random crops and horizontal flips. On a GPU, mixed precision and XLA
        are switched on automatically, and several GPUs train each run with `MirroredStrategy`.

        ```
        keras-resnet degradation --dataset cifar10 --depths 20 32 44 56 110 --seeds 0 1 --out runs/degradation-cifar10
        keras-resnet shortcuts --dataset cifar10 --depth 110 --block-versions v1 v2 --out runs/shortcuts-cifar10
        ```

        or in Python `experiments.degradation("cifar10", depths=(20, 32, 44, 56, 110), seeds=(0, 1),
        out="runs/degradation-cifar10")`. Expect tens of minutes per network on one current GPU
        (not measured here; ResNet-110 takes about twice as long as ResNet-56). Runs are resumable,
        so the command can be repeated after an
        interruption, and `--dry-run` lists the runs without training. With several seeds the plot
        shows the mean with a min-max band. Expect the paper's picture: plain-56 above plain-20 in
        training error, ResNets ordered the other way, test errors near Table 6.
    """),
]


# ---- 03: search ----------------------------------------------------------------------------

SEARCH = [
    md(f"""
        # Searching depth x shortcut type with KerasTuner

        How deep, and with which shortcut? `keras_resnet.tuning.search` runs a KerasTuner search over
        the papers' own axes: CIFAR depths (6n+2), the shortcut types of {RESNET} (identity `A`,
        projection `B`, full projection `C`, none) and the block versions of {PREACT}. Every trial is
        a `ResNet` built by `ResNetHyperModel` behind a normalisation layer and compiled with the
        paper's recipe, and it takes sparse integer labels (unlike KerasTuner's `HyperResNet`).

        This notebook runs a grid search, every combination once, which makes the trials table a
        clean depth x shortcut matrix. For larger spaces `tuner="hyperband"` (the default) spends
        most epochs on the promising trials; `"bayesian"` and `"random"` are there too. The full
        settings search depths 20 to 56 with shortcuts A, B and none on 8x8 digits, 6 epochs per
        trial, then retrain the best for 30 epochs: about eight minutes on 2 CPU cores. The small ones
        search depths 8 and 14 with A and none for one epoch, which only shows the mechanics.
    """),
    setup("03_search", """
        from IPython.display import Image

        from keras_resnet.console import print_table
        from keras_resnet.training import TrainConfig
        from keras_resnet.tuning import SearchSpace, read_trial_log, search

        space = SearchSpace(depths=(8, 14) if SMALL else (20, 32, 44, 56),
                            shortcuts=("identity", "none") if SMALL else ("identity", "projection", "none"),
                            versions=("v1",))
        SETTINGS = dict(tuner="grid", space=space, config=TrainConfig(image_size=8),
                        max_epochs=1 if SMALL else 6, retrain_epochs=2 if SMALL else 30, verbose=VERBOSE,
                        set_global_seed=True)
    """),
    code("""
        print(f"{space.size()} combinations")
        result = search("digits", OUT / "search", **SETTINGS)
    """),
    md("""
        ## The trials table and plot

        One row per trial: its hyperparameters, `score` (the best validation accuracy of its epochs),
        `epochs`, `params` and `seconds`. The same rows are in `trials.csv` and `trials.json`;
        `search.png` plots the best score by depth, one line per shortcut type. The best
        configuration is then trained again from scratch for `retrain_epochs`
        (`best_model.keras`), and its test accuracy is measured once, on the test split the search
        never saw. A single seed and a few epochs per trial make scores noisy, and short trials favour
        shallow nets, which converge sooner: with 6 epochs per trial the deep nets of the full
        settings are still far from done when they are scored. Such a search answers "what trains
        best in this budget"; give trials more epochs (or use Hyperband) before reading a depth
        effect into it.
    """),
    code("""
        print_table(sorted(result.rows, key=lambda row: -row["score"]),
                    ["trial", "depth", "shortcut", "version", "score", "epochs", "params", "seconds"])
        best = result.best
        print(f"\\nbest: depth {best['depth']}, shortcut {best['shortcut']}; retrained: test accuracy {result.test_accuracy:.3f}")
        Image(str(OUT / "search" / "search.png"))
    """),
    md("""
        ## Resuming

        KerasTuner keeps the oracle's state and every trial in `OUT/search/tuner/`. Calling `search`
        again with the same folder and settings reloads it: finished trials are not run again, a
        trial that was cut off (a crash, a killed job) runs again from its start, and the retrained
        best model is read back if its run finished. `tuner/trial_log.jsonl` records a line when a
        trial starts and when it ends, with the tuner that ran it, which makes this easy to check.
        `overwrite=True` (`--overwrite`) starts afresh.
    """),
    code("""
        log = read_trial_log(OUT / "search" / "tuner")
        again = search("digits", OUT / "search", **SETTINGS)
        new = read_trial_log(OUT / "search" / "tuner")[len(log):]
        print(f"trial starts: {sum(e['event'] == 'start' for e in log)} in the first call, "
              f"{sum(e['event'] == 'start' for e in new)} in the second; same best: {again.best['trial'] == best['trial']}")
    """),
    md("""
        ## Spreading the search over machines

        KerasTuner's distributed mode has one *chief*, which runs the oracle (it hands out trials and
        collects their scores), and any number of *workers*, which train. Every process runs the same
        command with the same search space and data; three environment variables tell them apart:

        ```
        # machine A, the chief (serves the oracle; writes trials.csv, search.png and the best model at the end)
        KERASTUNER_TUNER_ID=chief  KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000 keras-resnet tune --out runs/search --tuner grid --depths 20 32 44 56 --shortcuts A B none
        # machines B, C, ... (workers; several on one machine need their own ids and, with GPUs, their own CUDA_VISIBLE_DEVICES)
        KERASTUNER_TUNER_ID=tuner0 KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000 keras-resnet tune --out runs/search --tuner grid --depths 20 32 44 56 --shortcuts A B none
        KERASTUNER_TUNER_ID=tuner1 KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000 keras-resnet tune --out runs/search --tuner grid --depths 20 32 44 56 --shortcuts A B none
        ```

        Start the chief first; the port must be reachable from the workers. Workers print "worker
        finished" and leave the results to the chief. In Python, set the same variables before
        calling `search`. The test suite runs a chief and two workers on 127.0.0.1 and checks that
        every trial ran exactly once (`trial_log.jsonl` names the worker of each). Within one machine,
        `distribution="mirrored"` (`--distribution mirrored`) spreads each trial over its GPUs
        instead. For a search of your own design, `ResNetHyperModel` and `make_tuner` are the two
        pieces `search` is made of.
    """),
]


# ---- 04: export and deploy -----------------------------------------------------------------

EXPORT = [
    md("""
        # Export and deploy

        A trained `.keras` model becomes a SavedModel for TF Serving and TFLite (LiteRT) files for
        phones and small devices, each checked against the Keras model before it is kept:

        - **SavedModel** in TF Serving's layout, `BASE/NAME/VERSION/`, with a float32 and a uint8
          signature that take raw pixels, the class names as an asset and warm-up requests.
        - **TFLite** with builtin operators only (no Flex delegate), in four flavours: `float32`;
          `float16` weights (half the size); `dynamic` (int8 weights, float activations); and `int8`
          (full integer, activation ranges calibrated on 500 training images).

        Post-training int8 quantization typically costs ResNets 0.2 to 0.6 points of top-1 accuracy
        and shrinks the file about four times. A CIFAR ResNet-20 (32x32 inputs) measured during
        development: 1,069 KB as float32, 543 KB as float16, 297 KB as int8; one image on 2 CPU
        cores took 62 ms in eager Keras, 4.1 ms through the SavedModel and 0.63 / 0.54 / 0.31 ms
        through the float32 / float16 / int8 TFLite files.
    """),
    setup("04_export_and_deploy", """
        BASE = OUT / "saved_models" if SMALL else Path("runs/notebooks/saved_models")  # TF Serving's model base
        NAME = "digits_resnet"

        import json
        import urllib.request

        import keras
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter

        from keras_resnet import serving
        from keras_resnet.console import print_table
        from keras_resnet.data import load_dataset
        from keras_resnet.litert import TFLiteRunner
        from keras_resnet.pipeline import export_trained
        from keras_resnet.training import TrainConfig, train
        from keras_resnet.verification import DEFAULT_THRESHOLDS
    """),
    md("""
        ## The model

        With the full settings this is the best model of [03_search](03_search.ipynb) if that
        notebook has run (`runs/notebooks/03_search/search/best_model.keras`); otherwise a ResNet
        trained here (8 layers for 8 epochs with the small settings, ResNet-20 for 30 with the full).
    """),
    code("""
        best = Path("runs/notebooks/03_search/search/best_model.keras")
        if not SMALL and best.exists():
            model = keras.saving.load_model(best)
        else:
            depth = 8 if SMALL else 20
            model = train("resnet20", "digits", TrainConfig(epochs=8 if SMALL else 30, image_size=8 if SMALL else None),
                          out=OUT / "model", depth=depth, overwrite=True, verbose=VERBOSE, set_global_seed=True).model
        print(model.name, model.input_shape, "->", model.output_shape)
    """),
    md("""
        ## Export, and the verification report

        `export_trained` loads the dataset the model was trained on (its training split calibrates
        int8, its test split checks every artifact), writes everything into a staging folder, runs
        the checks, and moves into place only what passes (`keep_failed=True` keeps failures under a
        `.failed` name that servers ignore). Each run exports the next free version. The report has
        one row per artifact: size, the largest difference in probability from the Keras model
        (`max_abs_diff`), the share of test images with the same top-1 class (`top1_agreement`),
        accuracy, median single-image latency and whether it passed; it is also written to
        `BASE/NAME/export_report.json`.
    """),
    code("""
        report = export_trained(model, NAME, base=BASE, dataset="digits")
        print_table(report, ["format", "size_bytes", "max_abs_diff", "top1_agreement", "accuracy", "latency_ms", "passed"])
        version = report[0]["version"]
    """),
    md("""
        The thresholds: float32 files must match the Keras model to rounding; quantized ones may move
        a few borderline images, and the dynamic and int8 ones may not lose more than a point of
        accuracy. `keras_resnet.export.export_all`, which `export_trained` calls, takes your own
        (`thresholds={"int8": {"min_agreement": 0.99}}`).
    """),
    code("""
        print_table([{"format": fmt, **limits} for fmt, limits in DEFAULT_THRESHOLDS.items()])
        for path in sorted((BASE / NAME).rglob("*")):
            if path.is_file() and "variables" not in path.parts:
                print(f"{path.stat().st_size:>10,}  {path.relative_to(BASE)}")
    """),
    md("""
        ## Calling the local REST endpoint

        `serving.serve` answers TF Serving's REST API for every model under a base folder
        (`keras-resnet serve BASE` from a shell): `GET /v1/models/NAME` for the status, `POST
        /v1/models/NAME:predict` with `{"instances": [...]}` for predictions. Clients written for TF
        Serving work unchanged, and the same folder loads in TF Serving itself (`docker run -p
        8501:8501 -v "$PWD/BASE/NAME:/models/NAME" -e MODEL_NAME=NAME tensorflow/serving`). Here it
        runs in a background thread on a free port.
    """),
    code("""
        test = load_dataset("digits", image_size=model.input_shape[1], augment=False).test
        images, labels = (t.numpy() for t in next(iter(test)))
        server = serving.serve(BASE, port=0, block=False)
        try:
            with urllib.request.urlopen(f"{server.url}/v1/models/{NAME}") as answer:
                print(json.load(answer))
            body = json.dumps({"instances": images[:4].tolist()}).encode()  # raw pixels, 0-255
            request = urllib.request.Request(f"{server.url}/v1/models/{NAME}:predict", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request) as answer:
                predictions = json.load(answer)["predictions"]
        finally:
            server.stop()
        for label, p in zip(labels, predictions):
            print(f"true {label}: class {p['class_name']}, top 3 {p['top_k_classes'][:3]} "
                  f"with {np.round(p['top_k_probabilities'][:3], 3).tolist()}")
    """),
    md("""
        ## Running the TFLite file with `ai_edge_litert`

        `ai_edge_litert.interpreter.Interpreter` replaces the deprecated `tf.lite.Interpreter`. The
        files take one image at a time; the int8 file here keeps float32 input and output (it
        quantizes inside), so it takes raw pixels like the others. With `int8_io="uint8"` or `"int8"`
        the caller quantizes with the input's scale and zero point, which `TFLiteRunner` does.
    """),
    code("""
        path = BASE / NAME / "tflite" / f"{NAME}_{version}_int8.tflite"
        interpreter = Interpreter(model_path=str(path), num_threads=2)
        interpreter.allocate_tensors()
        source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        print("input", source["shape"], source["dtype"].__name__, "output", target["shape"], target["dtype"].__name__)
        interpreter.set_tensor(source["index"], images[:1].astype(source["dtype"]))
        interpreter.invoke()
        print("first test image: true", labels[0], "predicted", interpreter.get_tensor(target["index"]).argmax())

        for flavour in ("float32", "float16", "dynamic", "int8"):
            runner = TFLiteRunner(BASE / NAME / "tflite" / f"{NAME}_{version}_{flavour}.tflite")
            accuracy = (runner.predict(images).argmax(axis=1) == labels).mean()
            print(f"{flavour:8} accuracy on {len(images)} test images: {accuracy:.3f}")
    """),
]


# ---- 05: your own images -------------------------------------------------------------------

OWN_IMAGES = [
    md("""
        # Your own images: a folder, fine-tuned, exported, predicted

        What to do with pictures of your own: put them in one folder per class, load the folder with
        `load_dataset`, fine-tune a pretrained ResNet on it, export the result, and classify new image
        files with any of the exported files.

        Everything here is offline, so two things are stand-ins. The "photos" are scikit-learn
        digits that this notebook saves as coloured image files (JPEG, PNG, BMP and GIF, in several
        sizes, one of them turned by its EXIF tag, one grey, one broken); and the pretrained model
        is a ResNet-20 trained here on the other digits. With real RGB photos you would start from
        ImageNet weights instead (`resnet50`, `resnet101`, `resnet152`; see
        [docs/finetuning.md](../docs/finetuning.md)). The full settings (16x16 inputs, ResNet-20,
        10 epochs of pretraining and 12 of fine-tuning) take about two minutes on 2 CPU cores; the
        small ones (`KERAS_RESNET_SMALL=1`: 8x8 inputs, 8 layers, 2 epochs each) take under a minute
        and only show the mechanics.
    """),
    setup("05_your_own_images", """
        BASE = OUT / "saved_models" if SMALL else Path("runs/notebooks/saved_models")  # exports land here
        PHOTOS = OUT / "photos"  # the image folder: one sub-folder per class
        SIZE = 8 if SMALL else 16  # the model's input size; None would take the folder's most common size

        import subprocess
        import sys
        from collections import Counter

        import matplotlib.pyplot as plt
        import numpy as np
        from PIL import Image
        from sklearn.datasets import load_digits

        import keras_resnet
        from keras_resnet.console import print_table
        from keras_resnet.data import from_arrays, load_dataset
        from keras_resnet.images import read_image_file
        from keras_resnet.pipeline import export_trained
        from keras_resnet.training import TrainConfig, train
    """),
    md("""
        ## 1. A folder of images

        One sub-folder per class; the folder names are the class names. Images may sit anywhere
        below their class folder, under any file name. Files count by their extension (`.jpg`,
        `.jpeg`, `.png`, `.bmp`, `.gif`, any case); hidden files and anything else are ignored.

        ```
        photos/                        photos/
          eight/  0001.jpg ...           train/       eight/ five/ ... zero/
          five/   ...            or      validation/  eight/ five/ ... zero/   (optional)
          ...                            test/        eight/ five/ ... zero/
          zero/
        ```

        With the layout on the left, `load_dataset` holds out 20% of each class for testing and
        `validation_split` (10%) of the rest for validation, the same files on every run; with
        `train/` and `test/` folders it uses them as they are (and cuts the validation images from
        `train/` when there is no `validation/`).

        The cell below writes the 360 digits that the pretrained model will not see as "photos":
        light ink on dark paper in random colours, 48 to 80 pixels, in four formats. One photo is
        stored sideways with an EXIF orientation tag (as a phone held sideways writes it), one is a
        grey PNG, and one file is not an image at all.
    """),
    code("""
        digits = load_digits()  # 1,797 8x8 digits: the first 1,437 pretrain the model, the other 360 become photos
        NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
        SIZES = ((64, 64), (64, 64), (64, 64), (48, 48), (80, 60))  # (width, height)
        FORMATS = ("JPEG", "PNG", "BMP", "GIF")
        rng = np.random.default_rng(0)

        def photo(digit, size):
            ink, paper = rng.integers(150, 256, 3), rng.integers(0, 90, 3)
            grey = Image.fromarray(np.uint8(digit * 255 / 16)).resize(size, Image.Resampling.BILINEAR)
            alpha = np.asarray(grey, "float32")[..., None] / 255
            return Image.fromarray(np.uint8(paper + alpha * (ink - paper)))

        for i in range(1437, 1797):
            folder = PHOTOS / NAMES[digits.target[i]]
            folder.mkdir(parents=True, exist_ok=True)
            fmt = FORMATS[i % 4]
            photo(digits.images[i], SIZES[i % 5]).save(folder / f"{i}.{fmt.lower().replace('jpeg', 'jpg')}", fmt)

        TURNED = PHOTOS / "seven" / "camera_turned.jpg"  # stored sideways; EXIF orientation 6: "turn 90 degrees clockwise"
        exif = Image.Exif()
        exif[0x0112] = 6
        photo(digits.images[1442], (48, 64)).transpose(Image.Transpose.ROTATE_90).save(TURNED, exif=exif)
        GREY = PHOTOS / "five" / "grey.png"  # one channel among RGB photos
        photo(digits.images[1440], (64, 64)).convert("L").save(GREY)
        (PHOTOS / "two" / "broken.jpg").write_bytes(b"\\xff\\xd8 not a JPEG after all")  # a truncated download, say

        for folder in sorted(PHOTOS.iterdir()):
            kinds = Counter(path.suffix for path in folder.iterdir())
            print(f"{folder.name + '/':7} {sum(kinds.values()):3} files: {', '.join(f'{n} {s}' for s, n in sorted(kinds.items()))}")
        with Image.open(TURNED) as stored:
            print(f"\\n{TURNED.name}: stored {stored.height}x{stored.width}, read as {read_image_file(TURNED, 3).shape[:2]} "
                  "(height x width): the EXIF orientation is applied")
    """),
    md("""
        ## 2. Loading the folder

        `load_dataset(folder)` reads directory entries, not images: it lists and splits the files,
        opens a sample of 100 headers (for the most common size, and whether every image is grey)
        and, for the normalisation statistics, decodes up to 512 training images. Everything else
        is decoded by the `tf.data` pipelines as they read it, in parallel; so a folder of a million
        photos costs no more memory than its file names. Every file goes through one decoder
        (`keras_resnet.images.decode`, which `predict` and the exports use too): any of the four
        formats, EXIF orientation applied, and one channel only if every sampled image is grey, else
        RGB (the grey PNG above becomes three equal channels).

        **Unreadable files** are found when they are read. With `bad_files="error"` (the default)
        the first one stops everything with an error that names it; nothing is trained on garbage
        silently. Here the broken file is among the training images whose statistics are measured,
        so the error comes at once:
    """),
    code("""
        try:
            load_dataset(str(PHOTOS), image_size=SIZE)
        except ValueError as error:
            print(error)
    """),
    md("""
        `bad_files="skip"` drops unreadable files instead and lists them, as the pipelines reach them,
        in a text file (`skipped_files=`, else a temporary one); `ds.skipped()` reads it back. A
        file of the validation or test split is listed when that split is first read, so reading
        every split once lists them all. Fix or delete what it lists; here the file is deleted and
        the folder loaded again, with the default policy. (Training on the `"skip"` dataset works
        too: a batch is then one image short where a file was dropped.)
    """),
    code("""
        data = load_dataset(str(PHOTOS), image_size=SIZE, batch_size=32, bad_files="skip")
        for split in (data.train, data.validation, data.test):
            for _ in split:  # reading every file once
                pass
        skipped = data.skipped()
        print("skipped:", [str(Path(path).relative_to(PHOTOS.resolve())) for path in skipped])
        for path in skipped:
            os.remove(path)

        data = load_dataset(str(PHOTOS), image_size=SIZE, batch_size=32)
        print(f"{data.train_count} train / {data.validation_count} validation / {data.test_count} test images, "
              f"input shape {data.input_shape}, {data.num_classes} classes:\\n{data.class_names}")
        print("augmentation:", data.augmentation)
    """),
    md("""
        `data.augmentation` says what the training pipeline does. Below 64 pixels it is the ResNet
        paper's CIFAR recipe (`"cifar"`): pad by an eighth of the image, crop back at random, flip
        horizontally. From 64 pixels on it is the ImageNet recipe (`"imagenet"`): a random window of
        8-100% of the area with an aspect ratio between 3/4 and 4/3, resized to the input size, plus
        the flip; evaluation (validation, test, `predict`, exports' checks) then takes the central
        87.5% (`"fit": "center_crop"`). `augmentation="none"` (or `augment=False`) turns it off and
        `flip=False` keeps images unmirrored. Digits change their meaning when mirrored, but the flip
        stays on here, as it would for photos; a real digit folder would take `flip=False`. The
        random draws are seeded per image and epoch, so a run repeats exactly. A few training images
        as the model sees them:
    """),
    code("""
        images, labels = next(iter(data.train))
        figure, axes = plt.subplots(2, 8, figsize=(8, 2.4))
        for ax, image, label in zip(axes.flat, images.numpy().astype("uint8"), labels.numpy()):
            ax.imshow(image, interpolation="nearest")
            ax.set_title(data.class_names[label], fontsize=8)
            ax.axis("off")
        plt.show()
    """),
    md("""
        ## 3. Fine-tuning

        First the pretrained model. Here it is a ResNet-20 trained on the other 1,437 digits, grey
        and as RGB (its input must have the folder's three channels), for a few epochs; `train`
        writes it to `pretrained/model.keras`, with a normalisation layer that holds the digits'
        mean and standard deviation.
    """),
    code("""
        zoom = SIZE // 8
        x = np.repeat(digits.images.repeat(zoom, 1).repeat(zoom, 2)[..., None] * (255 / 16), 3, axis=-1)  # RGB, 0-255
        y = digits.target
        pretraining = from_arrays(x[:1437], y[:1437], x[1437:], y[1437:], name="digits_rgb")
        pretrained = train("resnet20", pretraining, TrainConfig(epochs=2 if SMALL else 10), out=OUT / "pretrained",
                           depth=8 if SMALL else 20, overwrite=True, verbose=VERBOSE, set_global_seed=True)
        print(f"pretrained {pretrained.metrics['model']}: test accuracy {pretrained.metrics['test_accuracy']:.3f} "
              f"on the pretraining test split, {pretrained.metrics['seconds']:.0f} s")
    """),
    md("""
        Then `TrainConfig(weights=...)` fine-tunes it on the folder. `train` keeps the backbone and
        its weights, drops the old classifier and puts a new one on it for the folder's ten classes
        (`pixels -> normalize -> ResNet -> predictions`), then trains in two phases, one call:

        - **phase 1** (`freeze_epochs`, default half the epochs) trains only the new head, with the
          backbone frozen; its BatchNorm layers run in inference mode, so their statistics stay put;
        - **phase 2** trains everything (`unfreeze="all"`, or the last `unfreeze=K` stages) at
          `finetune_lr_factor` (0.1) times the learning rate, with a fresh optimizer and schedule.

        **The preprocessing travels with the weights**: the new model reuses the `.keras` file's
        normalisation layer (the digits' statistics), as ImageNet weights bring the ImageNet mean.
        The model still takes raw pixels, 0-255, so exports need no preprocessing outside. Like any
        run, it resumes after a crash, even at the phase boundary.
    """),
    code("""
        config = TrainConfig(epochs=2 if SMALL else 12, weights=str(pretrained.out / "model.keras"),
                             freeze_epochs=1 if SMALL else 4)
        result = train("resnet20", data, config, out=OUT / "finetuned", overwrite=True, verbose=VERBOSE,
                       set_global_seed=True)
        print_table(result.metrics["finetune"]["phases"], ["phase", "first_epoch", "last_epoch", "trains", "lr", "trainable_params"])
        print(f"\\nfine-tuned: test accuracy {result.metrics['test_accuracy']:.3f} on the folder's {data.test_count} test images")
    """),
    md("""
        With photos of your own and ImageNet weights (a download of about 100 MB, once, into
        `~/.keras/models/`; not run here):

        ```python
        config = TrainConfig(epochs=20, weights="imagenet", freeze_epochs=5, unfreeze=2, image_size=224)
        result = train("resnet50", "path/to/photos", config, out="runs/photos")
        ```

        or `keras-resnet train --model resnet50 --weights imagenet --dataset path/to/photos
        --image-size 224 --epochs 20 --freeze-epochs 5 --out runs/photos`. A `model.keras` of an
        earlier run works the same way (`--weights runs/digits/model.keras`).
        [docs/finetuning.md](../docs/finetuning.md) has the details and a measured comparison with
        training from scratch.
    """),
    md("""
        ## 4. Export

        `export_trained` writes a SavedModel in TF Serving's layout (`BASE/NAME/VERSION/`, with the
        class names) and TFLite files, checks each against the Keras model on the folder's test
        images and keeps what passes. Given the folder, it loads it the way training did. Only the
        float32 TFLite file here; [04_export_and_deploy](04_export_and_deploy.ipynb) shows the
        quantized ones (`"float16"`, `"dynamic"`, `"int8"`) and serving. `keras_resnet.export.export_all`
        does the same from arrays (`x_test`, `y_test`, `class_names`, `representative_data`).
    """),
    code("""
        report = export_trained(result.model, "digit_photos", base=BASE, dataset=str(PHOTOS), tflite=["float32"])
        print_table(report, ["format", "size_bytes", "max_abs_diff", "top1_agreement", "accuracy", "passed"])
        TFLITE = next(row["path"] for row in report if row["format"] == "float32")
    """),
    md("""
        ## 5. Predicting image files

        `keras_resnet.predict(model, images, top_k=...)` takes a `.keras` file, a SavedModel (or its
        `BASE/NAME` folder: the latest version) or a `.tflite` file, and image paths or arrays. It
        reads each file with the same decoder, size and fit as training's evaluation pipeline, so
        the sideways photo and the grey one are read as above. The SavedModel and the TFLite file
        know the class names, and so does a run's `model.keras` (from the run's `metrics.json` next
        to it); `labels=` (`--labels FILE` on the command line) overrides them.
    """),
    code("""
        files = [TURNED, GREY]
        models = {"model.keras": result.out / "model.keras", "SavedModel": BASE / "digit_photos", "TFLite": TFLITE}
        rows = []
        for kind, model in models.items():
            for p in keras_resnet.predict(model, files, top_k=3):
                rows.append({"model": kind, "image": Path(p.path).name,
                             "top 3": ", ".join(f"{name} {probability:.2f}" for name, probability in p.top_k)})
        print_table(rows)
    """),
    md("""
        The same from a shell (`python -m keras_resnet` is `keras-resnet` for an environment whose
        scripts are not on `PATH`); `--json` prints the results as JSON, and an unreadable image is
        named on stderr while the others are still classified:
    """),
    code("""
        command = ["keras-resnet", "predict", str((BASE / "digit_photos").resolve()), "seven/camera_turned.jpg",
                   "five/grey.png", "--top-k", "2"]
        print("$", " ".join(command))
        done = subprocess.run([sys.executable, "-m", "keras_resnet", *command[1:]], cwd=PHOTOS, capture_output=True, text=True)
        print(done.stdout + done.stderr)
    """),
]


NOTEBOOKS = {
    "00_quickstart": QUICKSTART,
    "01_residual_blocks": BLOCKS,
    "02_degradation": DEGRADATION,
    "03_search": SEARCH,
    "04_export_and_deploy": EXPORT,
    "05_your_own_images": OWN_IMAGES,
}


def build(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` (a key of NOTEBOOKS), with fixed cell ids and no outputs."""
    nb = new_notebook(metadata={"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}})
    for i, cell in enumerate(NOTEBOOKS[name], start=1):
        cell = nbformat.from_dict(dict(cell))
        cell.id = f"cell-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(name: str) -> str:
    """The file content of notebook ``name``, exactly as :func:`main` writes it."""
    text = nbformat.writes(build(name))
    return text if text.endswith("\n") else text + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    check = argv == ["--check"]
    if argv and not check:
        print(__doc__)
        return 2
    stale = []
    for name in NOTEBOOKS:
        path = HERE / f"{name}.ipynb"
        text = render(name)
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        elif not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date with build_notebooks.py: {', '.join(stale)}; run python notebooks/build_notebooks.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
