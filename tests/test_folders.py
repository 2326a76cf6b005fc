"""Tests of keras_resnet.folders and the image-folder part of keras_resnet.data.

Layouts, what is ignored, every odd image kind through a dataset, the bad-file policies, that
nothing is decoded at set-up, streaming order and seeds, caching, and the ImageNet recipe.
Images are tiny (10 x 14 px, 70 x 90 for the ImageNet recipe) and few.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from test_images import H, W, encode, odd_images, reference, tolerance

from keras_resnet import folders, images
from keras_resnet.data import augmentation_settings, load_dataset

STATS = ([127.0, 127.0, 127.0], [64.0, 64.0, 64.0])


def arrays(ds):
    """One pass over a batched pipeline, as (images, labels) numpy arrays."""
    xs, ys = zip(*ds.as_numpy_iterator())
    return np.concatenate(xs), np.concatenate(ys)


def write(path, contents):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(contents)
    return path


def add_junk(folder, image):
    """Files that are not images, or hidden: none of them may count (some would not decode)."""
    write(folder / "notes.txt", b"hello")
    write(folder / "meta.json", b"{}")
    write(folder / "photo.jpg.bak", image)
    write(folder / ".DS_Store", b"\x00\x01garbage")
    write(folder / "._photo.jpg", b"AppleDouble garbage, not a JPEG")
    write(folder / ".hidden" / "extra.png", image)


def id_image(k):
    """A PNG whose blue channel is ``k`` everywhere (its identity after decoding)."""
    pixels = np.zeros((H, W, 3), np.uint8)
    pixels[..., 0] = np.arange(W, dtype=np.uint8)[None, :] * 9
    pixels[..., 1] = 255 - k
    pixels[..., 2] = k
    return encode(Image.fromarray(pixels), "PNG")


def ids(images_batch):
    return [int(v) for v in images_batch[:, 0, 0, 2]]


def write_folder(root, classes=("cat", "dog", "eel"), per_class=10, size=(12, 10), mode="RGB"):
    """Random PNGs, one sub-folder per class; returns {class: [arrays]}."""
    rng = np.random.default_rng(0)
    images = {}
    for cls in classes:
        (root / cls).mkdir(parents=True)
        images[cls] = []
        for i in range(per_class):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(pixels, mode).save(root / cls / f"{i:03d}.png")
            images[cls].append(pixels)
    return images


@pytest.mark.slow
def test_folder_of_pngs(tmp_path):
    images = write_folder(tmp_path / "pets")
    ds = load_dataset(str(tmp_path / "pets"), batch_size=4, augment=False)
    assert ds.class_names == ("cat", "dog", "eel") and ds.num_classes == 3
    assert ds.input_shape == (10, 12, 3)  # height 10, width 12: the images' own size
    # Per class: 2 of 10 for testing, 1 of the other 8 for validation.
    assert (ds.train_count, ds.validation_count, ds.test_count) == (21, 3, 6)
    seen = []
    for split in (ds.train, ds.validation, ds.test):
        x, y = arrays(split)
        assert x.dtype == np.float32 and y.dtype == np.int64
        seen += [(int(label), img.astype(np.uint8).tobytes()) for img, label in zip(x, y)]
    expected = [(k, img.tobytes()) for k, cls in enumerate(ds.class_names) for img in images[cls]]
    assert sorted(seen) == sorted(expected)  # every image once, exact pixels, right label
    # The split is fixed: another seed reshuffles training but tests on the same images.
    other = load_dataset(str(tmp_path / "pets"), batch_size=4, augment=False, seed=9)
    np.testing.assert_array_equal(arrays(other.test)[0], arrays(ds.test)[0])


@pytest.mark.slow
def test_folder_with_train_and_test_folders_in_grayscale(tmp_path):
    write_folder(tmp_path / "train", per_class=5, mode="L")
    write_folder(tmp_path / "test", per_class=2, mode="L")
    ds = load_dataset(str(tmp_path), batch_size=8, image_size=8, validation_split=0.2)
    assert ds.input_shape == (8, 8, 1)
    assert (ds.train_count, ds.validation_count, ds.test_count) == (12, 3, 6)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_folder_with_a_corrupt_image_names_the_file(tmp_path, damage):
    write_folder(tmp_path / "pets")
    bad = tmp_path / "pets" / "dog" / "005.png"
    data = bad.read_bytes()
    bad.write_bytes(b"not an image at all" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cannot read image .*dog/005\.png"):
        load_dataset(str(tmp_path / "pets"))


# ---- odd images in one folder --------------------------------------------------------------------

@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory):
    """train/ and test/ both hold every odd kind of image (class "odd") and three PNGs (class
    "plain", one nested two folders down), plus junk and hidden files and a hidden class."""
    root = tmp_path_factory.mktemp("odd")
    files = odd_images(np.random.default_rng(0), upright=True)
    rng = np.random.default_rng(1)
    plain = [encode(Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)), "PNG") for _ in range(3)]
    for split in ("train", "test"):
        for name, contents in files.items():
            write(root / split / "odd" / name, contents)
        write(root / split / "plain" / "0.png", plain[0])
        write(root / split / "plain" / "1.png", plain[1])
        write(root / split / "plain" / "nested" / "deeper" / "2.png", plain[2])
        add_junk(root / split / "odd", plain[0])
        write(root / split / ".hidden_class" / "x.png", plain[0])
    return root


@pytest.mark.slow
def test_odd_images_in_one_folder_decode_like_pillow(odd_folder):
    ds = load_dataset(str(odd_folder), batch_size=8, validation_split=0, augment=False)
    assert ds.class_names == ("odd", "plain") and ds.num_classes == 2
    assert ds.input_shape == (H, W, 3)  # mixed: RGB; every image H x W once upright
    assert (ds.train_count, ds.validation_count, ds.test_count) == (23, 0, 23)
    x, y = arrays(ds.test)
    assert x.shape == (23, H, W, 3)
    # The test split is in file order: class by class, sorted paths.
    paths = sorted(str(p) for p in (odd_folder / "test" / "odd").iterdir()
                   if p.suffix in (".png", ".jpg", ".bmp", ".gif") and not p.name.startswith("."))
    paths += sorted(str(p) for p in (odd_folder / "test" / "plain").rglob("*.png"))
    assert len(paths) == 23
    np.testing.assert_array_equal(y, [0] * 20 + [1] * 3)
    for path, image in zip(paths, x):
        contents = open(path, "rb").read()
        diff = np.abs(image - reference(contents, 3)).max()
        assert diff <= tolerance(contents, 3), (path, diff)


@pytest.mark.slow
def test_only_grey_images_give_one_channel(tmp_path):
    files = odd_images(np.random.default_rng(3))
    names = ("grey.png", "grey.jpg", "grey_alpha.png", "grey16.png")
    for split in ("train", "test"):
        for name in names:
            write(tmp_path / split / "g" / name, files[name])
    ds = load_dataset(str(tmp_path), batch_size=8, validation_split=0, augment=False)
    assert ds.input_shape == (H, W, 1) and len(ds.mean) == 1
    x, _ = arrays(ds.test)
    for name, image in zip(sorted(names), x):
        assert np.abs(image - reference(files[name], 1)).max() <= tolerance(files[name], 1), name


@pytest.mark.slow
def test_cache_settings_give_the_same_pixels(odd_folder, tmp_path):
    tests = [arrays(load_dataset(str(odd_folder), batch_size=8, validation_split=0, augment=False, cache=cache,
                                 stats=STATS).test)[0]
             for cache in (False, True, str(tmp_path / "cache"))]
    np.testing.assert_array_equal(tests[0], tests[1])
    np.testing.assert_array_equal(tests[0], tests[2])
    assert (tmp_path / "cache").is_dir()


# ---- layout ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_class_folders_nested_folders_and_ignored_files(tmp_path):
    image = id_image(1)
    for i in range(3):
        write(tmp_path / "cat" / f"{i}.png", image)
        write(tmp_path / "dog" / f"{i}.PNG", image)  # any case
    write(tmp_path / "cat" / "sub" / "deeper" / "3.png", image)
    write(tmp_path / "cat" / "sub" / "4.png", image)
    add_junk(tmp_path / "cat", image)
    add_junk(tmp_path / "dog", image)
    write(tmp_path / ".hidden" / "x.png", image)
    write(tmp_path / "readme.txt", b"not a class")
    assert folders.class_folders(tmp_path) == ["cat", "dog"]
    assert len(folders.list_images(tmp_path / "cat")) == 5
    index = folders.index_folder(tmp_path, validation_split=0.0, test_split=0.2)
    assert index.class_names == ("cat", "dog") and not index.predefined
    paths = index.splits["train"][0] + index.splits["test"][0]
    labels = np.concatenate([index.splits["train"][1], index.splits["test"][1]])
    assert len(paths) == 8 and index.splits["validation"] is None
    assert sorted(p for p, k in zip(paths, labels) if k == 0) == folders.list_images(tmp_path / "cat")
    assert all(k == 0 for p, k in zip(paths, labels) if "/sub/" in p)
    ds = load_dataset(str(tmp_path), batch_size=4, augment=False, validation_split=0.25, stats=STATS)
    assert ds.class_names == ("cat", "dog")
    assert (ds.train_count, ds.validation_count, ds.test_count) == (4, 2, 2)  # per class: 1 test, 1 validation


@pytest.mark.slow
def test_train_validation_and_test_folders(tmp_path):
    for split, n in (("train", 4), ("validation", 2), ("test", 3)):
        for cls in ("a", "b"):
            for i in range(n):
                write(tmp_path / split / cls / f"{i}.png", id_image(i))
    index = folders.index_folder(tmp_path, validation_split=0.5, test_split=0.2)
    assert index.predefined and index.class_names == ("a", "b")
    assert [len(index.splits[k][0]) for k in ("train", "validation", "test")] == [8, 4, 6]
    ds = load_dataset(str(tmp_path), batch_size=4, augment=False, stats=STATS)
    assert (ds.train_count, ds.validation_count, ds.test_count) == (8, 4, 6)
    # Without validation/, validation_split of train/ is held out, per class.
    for path in (tmp_path / "validation").rglob("*.png"):
        path.unlink()
    for cls in ("a", "b"):
        (tmp_path / "validation" / cls).rmdir()
    (tmp_path / "validation").rmdir()
    ds = load_dataset(str(tmp_path), batch_size=4, augment=False, validation_split=0.25, stats=STATS)
    assert (ds.train_count, ds.validation_count, ds.test_count) == (6, 2, 6)
    write(tmp_path / "test" / "c" / "0.png", id_image(0))
    with pytest.raises(ValueError, match="must hold the same class folders"):
        load_dataset(str(tmp_path), stats=STATS)


def test_folders_without_images_are_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no class sub-folders"):
        load_dataset(str(tmp_path / "empty"))
    for cls in ("a", "b"):
        add_junk(tmp_path / "junk" / cls, id_image(0))
    with pytest.raises(ValueError, match=r"holds no images \(\.bmp, \.gif, \.jpeg, \.jpg, \.png\)"):
        load_dataset(str(tmp_path / "junk"))
    (tmp_path / "split" / "train" / "a").mkdir(parents=True)
    (tmp_path / "split" / "test" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="holds no images"):
        load_dataset(str(tmp_path / "split"))


# ---- headers and helpers ----------------------------------------------------------------------------

def test_inspect_headers_sizes_with_exif_and_grey(tmp_path):
    files = odd_images(np.random.default_rng(4), upright=True)
    paths = [str(write(tmp_path / name, contents)) for name, contents in files.items()]
    assert folders.inspect_headers(paths) == ((H, W), 3)
    grey = [p for p in paths if "grey" in p]
    assert folders.inspect_headers(grey) == ((H, W), 1)
    garbage = str(write(tmp_path / "garbage.jpg", b"garbage"))
    assert folders.inspect_headers([garbage]) == (None, 3)
    assert folders.inspect_headers(grey + [garbage]) == ((H, W), 1)
    # Orientations 5-8 stored W x H count as H x W.
    assert folders.inspect_headers([p for p in paths if "exif" in p]) == ((H, W), 3)


def test_evenly_spaced_and_stratified():
    assert folders.evenly_spaced(list(range(10)), 20) == list(range(10))
    assert folders.evenly_spaced(list(range(10)), 5) == [0, 2, 4, 6, 8]
    labels = np.array([0] * 10 + [1] * 2 + [2])
    parts = folders.stratified(labels, 0.2, seed=0)
    assert sorted(np.concatenate([parts["chosen"], parts["rest"]])) == list(range(13))
    assert list(np.bincount(labels[parts["chosen"]], minlength=3)) == [2, 1, 0]  # one each side of 2
    np.testing.assert_array_equal(folders.stratified(labels, 0.2, seed=0)["chosen"], parts["chosen"])


# ---- streaming ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def id_folder(tmp_path_factory):
    """train/{a,b} with 6 images each, test/{a,b} with 2: every image's blue channel is its id."""
    root = tmp_path_factory.mktemp("ids")
    k = 0
    for split, n in (("train", 6), ("test", 2)):
        for cls in ("a", "b"):
            for i in range(n):
                write(root / split / cls / f"{i}.png", id_image(k))
                k += 1
    return root


@pytest.mark.parametrize("cache", [False, True], ids=["streamed", "cached"])
@pytest.mark.slow
def test_training_order_per_epoch_and_seed_evaluation_unshuffled(id_folder, cache):
    def load(seed):
        return load_dataset(str(id_folder), batch_size=5, validation_split=0, augment=False, cache=cache, seed=seed,
                            stats=STATS)

    ds = load(1)
    x1, y1 = arrays(ds.train)
    x2, _ = arrays(ds.train)
    e1, e2 = ids(x1), ids(x2)
    assert sorted(e1) == sorted(e2) == list(range(12))  # each training image once per epoch
    np.testing.assert_array_equal(y1, [k // 6 for k in e1])  # labels travel with their images
    assert e1 != e2
    again = load(1)
    assert [ids(arrays(again.train)[0]) for _ in range(2)] == [e1, e2]
    assert ids(arrays(load(2).train)[0]) != e1
    for _ in range(2):  # evaluation: file order, every pass
        x, y = arrays(ds.test)
        assert ids(x) == [12, 13, 14, 15] and list(y) == [0, 0, 1, 1]


# ---- the ImageNet recipe ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def large_folder(tmp_path_factory):
    """70 x 90 images (JPEG, PNG, and an EXIF-turned JPEG in test/), 3 + 3 to train, 2 + 1 to test."""
    root = tmp_path_factory.mktemp("large")
    rng = np.random.default_rng(5)

    def image(h=70, w=90):
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))

    exif = Image.Exif()
    exif[0x0112] = 6
    for cls in ("a", "b"):
        for i in range(3):
            write(root / "train" / cls / f"{i}.jpg", encode(image(), "JPEG"))
        write(root / "test" / cls / "0.png", encode(image(), "PNG"))
    write(root / "test" / "a" / "1.jpg", encode(image(90, 70), "JPEG", exif=exif))
    return root


@pytest.mark.slow
def test_imagenet_recipe_from_64_px(large_folder):
    ds = load_dataset(str(large_folder), image_size=64, batch_size=4, validation_split=0, seed=3)
    assert ds.input_shape == (64, 64, 3)
    assert ds.augmentation["recipe"] == "imagenet" and ds.augmentation["fit"] == "center_crop"
    assert ds.augmentation["flip"] is True and ds.augmentation["scale"] == [0.08, 1.0]
    x, _ = arrays(ds.test)
    paths = sorted(str(p) for p in (large_folder / "test" / "a").iterdir()) + [str(large_folder / "test" / "b" / "0.png")]
    for path, image in zip(paths, x):
        expected = images.decode(open(path, "rb").read(), 3, (64, 64), "center_crop").numpy()
        np.testing.assert_array_equal(image, expected, err_msg=path)
    e1, e2 = arrays(ds.train)[0], arrays(ds.train)[0]
    assert e1.shape == e2.shape == (6, 64, 64, 3)
    assert not np.array_equal(e1, e2)
    again = load_dataset(str(large_folder), image_size=64, batch_size=4, validation_split=0, seed=3)
    np.testing.assert_array_equal(arrays(again.train)[0], e1)
    np.testing.assert_array_equal(arrays(again.train)[0], e2)
    # The images' own size (70 x 90) is large enough too.
    own = load_dataset(str(large_folder), batch_size=4, validation_split=0, stats=STATS)
    assert own.input_shape == (70, 90, 3) and own.augmentation["recipe"] == "imagenet"


@pytest.mark.slow
def test_other_recipes_are_selectable_at_64_px(large_folder):
    train_files = sorted(str(p) for p in (large_folder / "train").rglob("*.jpg"))
    evaluated = {images.decode(open(p, "rb").read(), 3, (64, 64), "center_crop").numpy().tobytes() for p in train_files}
    cifar = load_dataset(str(large_folder), image_size=64, batch_size=8, validation_split=0, augmentation="cifar",
                         stats=STATS)
    assert cifar.augmentation["recipe"] == "cifar" and cifar.augmentation["pad"] == 8
    assert cifar.augmentation["fit"] == "center_crop"  # the evaluation geometry follows the size
    assert arrays(cifar.train)[0].shape == (6, 64, 64, 3)
    for kwargs in ({"augmentation": "none"}, {"augment": False}):
        plain = load_dataset(str(large_folder), image_size=64, batch_size=8, validation_split=0, stats=STATS, **kwargs)
        assert plain.augmentation["recipe"] == "none" and plain.augmentation["flip"] is False
        # Training images are the evaluation images: centre-cropped, not augmented.
        assert {image.astype(np.uint8).tobytes() for image in arrays(plain.train)[0]} == evaluated
    with pytest.raises(ValueError, match=r"augmentation must be one of .*received augmentation='autoaugment'"):
        load_dataset(str(large_folder), augmentation="autoaugment")


def test_augmentation_settings():
    small, large = augmentation_settings((63, 63, 3)), augmentation_settings((64, 96, 3))
    assert (small["recipe"], small["fit"], small["pad"]) == ("cifar", "stretch", 7)
    assert (large["recipe"], large["fit"], large["pad"]) == ("imagenet", "center_crop", 0)
    off = augmentation_settings((64, 64, 3), augment=False)
    assert (off["recipe"], off["flip"], off["fit"]) == ("none", False, "center_crop")
    assert augmentation_settings((128, 128, 1), recipe="cifar", flip=False)["flip"] is False


# ---- unreadable files -------------------------------------------------------------------------------

def damage(path, how):
    data = path.read_bytes()
    path.write_bytes(b"not an image at all" if how == "garbage" else data[: len(data) // 2])


@pytest.mark.slow
def test_nothing_is_decoded_at_setup(tmp_path):
    for split in ("train", "test"):
        for cls, name in (("a", "x.jpg"), ("b", "y.png")):
            write(tmp_path / split / cls / name, b"garbage bytes, not an image")
    ds = load_dataset(str(tmp_path), image_size=8, stats=STATS, validation_split=0, batch_size=2)
    assert ds.input_shape == (8, 8, 3) and ds.train_count == ds.test_count == 2
    for split in (ds.test, ds.train):
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            arrays(split)
        path = folders.unreadable_file(info.value)
        assert path in {str(tmp_path / s / "a" / "x.jpg") for s in ("train", "test")} | {
            str(tmp_path / s / "b" / "y.png") for s in ("train", "test")}
        assert path in str(info.value)
    with pytest.raises(ValueError, match="none of the sampled images .* could be opened"):
        load_dataset(str(tmp_path), stats=STATS)  # no size to take from any header
    with pytest.raises(ValueError, match=r"cannot read image '.*/train/a/x\.jpg'"):
        load_dataset(str(tmp_path), image_size=8)  # the statistics decode the training sample


@pytest.mark.parametrize("cache", [True, False], ids=["cached", "streamed"])
@pytest.mark.slow
def test_error_policy_names_the_file_when_it_is_read(id_folder, tmp_path, cache):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(id_folder, root)
    jpeg = encode(Image.open(root / "train" / "b" / "2.png").convert("RGB"), "JPEG")
    bad_train = write(root / "train" / "b" / "2.jpg", jpeg[: len(jpeg) // 2])  # truncated JPEG
    bad_test = root / "test" / "a" / "1.png"
    damage(bad_test, "truncated")
    ds = load_dataset(str(root), batch_size=4, validation_split=0, augment=False, cache=cache, stats=STATS)
    for split, bad in ((ds.test, bad_test), (ds.train, bad_train)):
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            arrays(split)
        assert folders.unreadable_file(info.value) == str(bad)
        with pytest.raises(ValueError, match=f"cannot read image '{bad}'.*bad_files='skip'"):
            folders.reraise_unreadable(info.value)
    assert folders.unreadable_file(ValueError("something else")) is None


@pytest.mark.parametrize("cache", [False], ids=["streamed"])  # the cached path shares the check
@pytest.mark.slow
def test_skip_policy_drops_and_lists_each_bad_file_once(id_folder, tmp_path, cache):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(id_folder, root)
    jpeg = encode(Image.open(root / "test" / "a" / "0.png").convert("RGB"), "JPEG")
    bad = [
        write(root / "train" / "a" / "garbage.jpg", b"garbage, not a JPEG"),
        write(root / "train" / "b" / "cut.png", id_image(99)[:60]),  # truncated PNG
        write(root / "test" / "a" / "cut.jpg", jpeg[: len(jpeg) // 2]),  # truncated JPEG
    ]
    log = tmp_path / "skipped.txt"
    ds = load_dataset(str(root), batch_size=4, validation_split=0, augment=False, cache=cache, bad_files="skip",
                      skipped_files=log, seed=2)
    assert (ds.train_count, ds.test_count) == (14, 5)  # listed, not yet read
    for _ in range(2):
        x, y = arrays(ds.train)
        assert sorted(ids(x)) == list(range(12))  # every good image exactly once per epoch
        np.testing.assert_array_equal(y, [k // 6 for k in ids(x)])
        assert ids(arrays(ds.test)[0]) == [12, 13, 14, 15]
    assert sorted(ds.skipped()) == sorted(str(p) for p in bad)  # each once, after two epochs
    assert ds.skipped_files == str(log)
    assert set(log.read_text().split()) == {str(p) for p in bad}
    assert folders.skipped_files(None) == [] and folders.skipped_files(tmp_path / "none.txt") == []


@pytest.mark.slow
def test_skip_policy_writes_a_temporary_list_by_default(tmp_path):
    write(tmp_path / "a" / "0.png", id_image(0))
    write(tmp_path / "a" / "1.png", id_image(1))
    write(tmp_path / "b" / "0.png", id_image(2))
    write(tmp_path / "b" / "1.png", b"garbage")
    ds = load_dataset(str(tmp_path), batch_size=4, validation_split=0, augment=False, bad_files="skip")
    arrays(ds.train)
    arrays(ds.test)
    assert ds.skipped_files and ds.skipped() == [str(tmp_path / "b" / "1.png")]
