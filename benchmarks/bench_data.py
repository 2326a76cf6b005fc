"""Image-folder pipelines: keras-resnet's streaming folder dataset against Keras's own loader.

A folder of 128x128 JPEGs in 10 class folders is generated deterministically (pixels from a
seeded generator; reused while its marker file says it holds the same images), at two sizes
(5,000 and 20,000 images; 150 with ``--quick``, a smoke run). For each size, each side runs in a
fresh Python process (so that its peak resident memory is its own), alternating over two
rounds:

- ours: ``keras_resnet.data.load_dataset(folder, image_size=128, cache=False)``, then one pass
  over its *training* pipeline (the default ImageNet recipe at 128 px: random-resized-crop and
  flip, decoded in parallel);
- reference: ``keras.utils.image_dataset_from_directory(folder, image_size=(128, 128),
  batch_size=128, shuffle=True)``, then one pass (decode and resize, no augmentation).

Ratios (goals from issue 13): epoch throughput ours / reference >= 1.0 at both sizes (the
second pass: the first also builds each pipeline's functions; both are recorded); set-up
(listing, labels, splits and the header sample: no image decoded) <= 2 s per 100,000 files,
timed on a folder of 100,000 hard links to ten JPEGs;
peak RSS at 20,000 images / at 5,000 <= 1.10. The full ``load_dataset`` time (with the
512-image statistics sample) and the pipeline without augmentation are reported for
information.

Usage: python benchmarks/bench_data.py [--quick] [--data DIR] [--rounds 2]
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from common import arguments, median, ratio, report, run_json

SIZE = 128
CLASSES = 10
BATCH = 128
GENERATOR_VERSION = 1


def generate(folder: Path, count: int) -> Path:
    """``count`` 128x128 JPEGs (quality 90) in 10 class folders, the same bytes on every run."""
    import numpy as np
    from PIL import Image

    marker = folder / ".generated.json"
    spec = {"count": count, "size": SIZE, "classes": CLASSES, "version": GENERATOR_VERSION}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return folder
    rng = np.random.default_rng(count)
    for c in range(CLASSES):
        (folder / f"class_{c}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        # Smooth random images (a 16x16 pattern enlarged) compress like photos, not like noise.
        small = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((SIZE, SIZE), Image.BILINEAR)
        image.save(folder / f"class_{i % CLASSES}" / f"{i:06d}.jpg", quality=90)
    marker.write_text(json.dumps(spec))
    return folder


def generate_listing(folder: Path, count: int, sources: list[Path]) -> Path:
    """``count`` files in 10 class folders, hard links to a few small JPEGs (for timing set-up;
    a file system allows some 65,000 links to one file)."""
    marker = folder / ".generated.json"
    spec = {"count": count, "links_to": [str(s) for s in sources], "version": GENERATOR_VERSION}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return folder
    for c in range(CLASSES):
        (folder / f"class_{c}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        target = folder / f"class_{i % CLASSES}" / f"{i:07d}.jpg"
        if not target.exists():
            os.link(sources[i % len(sources)], target)
    marker.write_text(json.dumps(spec))
    return folder


def measure_setup(folder: str) -> dict:
    """Listing, labels, splits and the header sample of a folder: what set-up costs per file."""
    from PIL import Image

    from keras_resnet import folders

    Image.init()  # Pillow's one-off plugin registration is not a per-file cost
    started = time.perf_counter()
    index = folders.index_folder(folder, 0.1, 0.2)
    folders.inspect_headers(index.splits["train"][0])
    seconds = time.perf_counter() - started
    files = sum(len(v[0]) for v in index.splits.values() if v is not None)
    return {"side": "setup", "files": files, "setup_s": seconds, "s_per_100k": seconds / files * 100_000}


def measure(side: str, folder: str) -> dict:
    """One side in this process: set-up seconds, one epoch's images/s, peak RSS (MB)."""
    if side == "setup":
        return measure_setup(folder)
    from common import quiet_tensorflow

    keras = quiet_tensorflow()
    import tensorflow as tf  # noqa: F401  (imported by Keras already; here for the timing's sake)

    record = {"side": side}
    if side == "reference":
        started = time.perf_counter()
        ds = keras.utils.image_dataset_from_directory(folder, image_size=(SIZE, SIZE), batch_size=BATCH,
                                                      shuffle=True, seed=0, verbose=False)
        record["setup_s"] = time.perf_counter() - started
    else:
        from keras_resnet.data import load_dataset

        started = time.perf_counter()
        data = load_dataset(folder, image_size=SIZE, batch_size=BATCH, cache=False,
                            augmentation="none" if side == "ours_plain" else None)
        record["setup_s"] = time.perf_counter() - started
        record["recipe"] = data.augmentation["recipe"]
        ds = data.train
    for epoch in (1, 2):  # the first pass also builds the pipeline's functions
        images = 0
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        for x, _ in ds:
            images += int(x.shape[0])
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu_s = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
        record[f"epoch{epoch}"] = {"images": images, "seconds": seconds, "images_per_s": images / seconds,
                                   "cpu_us_per_image": cpu_s / images * 1e6}
    record.update(images_per_s=record["epoch2"]["images_per_s"], cpu_us_per_image=record["epoch2"]["cpu_us_per_image"],
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return record


def run_side(side: str, folder: Path) -> dict:
    return run_json([sys.executable, __file__, "--measure", side, "--folder", str(folder)], None, side)


def main(argv=None):
    parser = arguments(__doc__, "150 images, one round (a smoke run)", rounds=2, internal=("--measure", "--folder"))
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "keras-resnet-bench-data"),
                        help="where the generated folders live (kept between runs)")
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.folder)), flush=True)
        return None
    quick = args.quick
    rounds = 1 if quick else args.rounds
    counts = (150,) if quick else (5000, 20000)  # quick: one size, the pipeline runs (nothing judged)
    rows = {}
    for count in counts:
        started = time.perf_counter()
        folder = generate(Path(args.data) / f"jpeg{SIZE}_{count}", count)
        print(f"folder of {count} images ready in {time.perf_counter() - started:.1f} s: {folder}", flush=True)
        runs = {"ours": [], "reference": [], "ours_plain": []}
        for r in range(rounds):
            order = ["ours", "reference"] if r % 2 == 0 else ["reference", "ours"]
            for side in [*order, "ours_plain"] if r == 0 and not quick else order:
                result = run_side(side, folder)
                runs[side].append(result)
                print(f"  {count:>6} images  {side:<10} set-up {result['setup_s']:6.2f} s  "
                      f"{result['images_per_s']:8.0f} img/s  {result['cpu_us_per_image']:5.0f} us CPU/img  peak RSS {result['peak_rss_mb']:6.0f} MB", flush=True)
        rows[count] = {
            side: {
                "setup_s": round(median([x["setup_s"] for x in values]), 3),
                "images_per_s": round(median([x["images_per_s"] for x in values]), 1),
                "peak_rss_mb": round(median([x["peak_rss_mb"] for x in values]), 1),
                **({"recipe": values[0]["recipe"]} if side != "reference" else {}),
                "runs": values,
            }
            for side, values in runs.items() if values
        }
    small, large = counts[0], counts[-1]
    ratios = []
    for count in counts:
        ours, ref = rows[count]["ours"], rows[count]["reference"]
        ratios.append(ratio("data", f"epoch img/s, ours / image_dataset_from_directory ({count:,})",
                            ours["images_per_s"] / ref["images_per_s"], ">= 1.0", quick=quick))
    listing_count = 1_000 if quick else 100_000
    sources = sorted((Path(args.data) / f"jpeg{SIZE}_{small}" / "class_0").glob("*.jpg"))[:10]
    listing = generate_listing(Path(args.data) / f"links_{listing_count}", listing_count, sources)
    setup = [run_side("setup", listing) for _ in range(rounds)]
    per_100k = median([x["s_per_100k"] for x in setup])
    print(f"  set-up of {listing_count:,} files: {median([x['setup_s'] for x in setup]):.2f} s", flush=True)
    ratios.append(ratio("data", f"set-up s per 100,000 files (measured on {listing_count:,}; no decode)", per_100k,
                        "<= 2.0", quick=quick))
    if large != small:
        ratios.append(ratio("data", f"peak RSS, {large:,} images / {small:,} (ours)",
                            rows[large]["ours"]["peak_rss_mb"] / rows[small]["ours"]["peak_rss_mb"], "<= 1.10", quick=quick))
        ratios.append(ratio("data", f"peak RSS, {large:,} / {small:,} (image_dataset_from_directory)",
                            rows[large]["reference"]["peak_rss_mb"] / rows[small]["reference"]["peak_rss_mb"], quick=quick))
    for count in counts:
        ratios.append(ratio("data", f"load_dataset s incl. 512-image stats sample ({count:,})",
                            rows[count]["ours"]["setup_s"], quick=quick))
        if "ours_plain" in rows[count]:
            ratios.append(ratio("data", f"epoch img/s without augmentation / reference ({count:,})",
                                rows[count]["ours_plain"]["images_per_s"] / rows[count]["reference"]["images_per_s"],
                                quick=quick))
    return report("data_cpu", {"goal": "issue 13: throughput >= 1.0x, set-up <= 2 s / 100k files, RSS flat",
                                     "quick": quick, "image_size": SIZE, "batch": BATCH,
                                     "rows": {str(k): v for k, v in rows.items()}, "setup": setup,
                                     "ratios": ratios})


if __name__ == "__main__":
    main()
