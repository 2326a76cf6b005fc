"""Tests of keras_resnet.data: digits, TFDS (mock data), augmentation, preprocessing (image folders: test_folders.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_resnet.data import Dataset, check_dataset, load_dataset, preprocessing


def arrays(ds):
    """One pass over a batched pipeline, as (images, labels) numpy arrays."""
    xs, ys = zip(*ds.as_numpy_iterator())
    return np.concatenate(xs), np.concatenate(ys)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", batch_size=64)


def test_digits_shapes_dtypes_and_ranges(digits):
    assert isinstance(digits, Dataset)
    assert digits.input_shape == (16, 16, 1)
    assert (digits.num_classes, digits.class_names) == (10, tuple("0123456789"))
    assert (digits.train_count, digits.validation_count, digits.test_count) == (1293, 144, 360)
    for split, count in ((digits.train, 1293), (digits.validation, 144), (digits.test, 360)):
        x, y = arrays(split)
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.shape == (count, 16, 16, 1) and y.shape == (count,)
        # Raw pixels: the model normalises, not the pipeline.
        assert x.min() == 0 and x.max() == 255 and np.all(x == np.round(x))
        assert set(np.unique(y)) == set(range(10))
    first, _ = next(digits.train.as_numpy_iterator())
    assert first.shape == (64, 16, 16, 1)
    assert digits.steps_per_epoch == 21


def test_digits_split_is_stratified_fixed_and_independent_of_seed(digits):
    _, y_test = arrays(digits.test)
    assert np.all(np.abs(np.bincount(y_test) - 36) <= 1)  # 360 test images, 10 classes
    other = load_dataset("digits", batch_size=64, seed=7, augment=False)
    np.testing.assert_array_equal(arrays(other.test)[0], arrays(digits.test)[0])
    np.testing.assert_array_equal(arrays(other.validation)[0], arrays(digits.validation)[0])
    # The statistics come from the training split only, unaugmented.
    x_train, _ = arrays(load_dataset("digits", batch_size=256, augment=False).train)
    np.testing.assert_allclose(digits.mean, [x_train.mean()], rtol=1e-5)
    np.testing.assert_allclose(digits.std, [x_train.std()], rtol=1e-4)


@pytest.mark.parametrize("size", [8, 32])
def test_digits_image_size(size):
    ds = load_dataset("digits", image_size=size, batch_size=500, validation_split=0)
    x, _ = next(ds.test.as_numpy_iterator())
    assert ds.input_shape == (size, size, 1) and x.shape[1:] == (size, size, 1)
    assert ds.validation is None and ds.validation_count == 0 and ds.train_count == 1437


def shifts_of(image, pad):
    """Every translation of ``image`` by up to ``pad`` pixels, with zeros filling in."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    return [padded[dy:dy + h, dx:dx + w] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]


def test_augmentation_is_a_random_translation_without_flips_for_digits():
    plain = load_dataset("digits", batch_size=128, augment=False, seed=3)
    augmented = load_dataset("digits", batch_size=128, seed=3)
    assert augmented.augmentation == {"recipe": "cifar", "pad": 2, "flip": False, "scale": None, "ratio": None, "fit": "stretch"}
    x0, y0 = arrays(plain.train)
    x1, y1 = arrays(augmented.train)
    np.testing.assert_array_equal(y0, y1)  # the same shuffle: augmentation does not reorder
    moved = 0
    for a, b in zip(x0, x1):
        assert any(np.array_equal(b, s) for s in shifts_of(a, 2))
        moved += not np.array_equal(a, b)
    assert moved > 0.7 * len(x0)  # 24 of 25 offsets move the image


def test_augmentation_varies_per_epoch_and_repeats_with_the_seed():
    a = load_dataset("digits", batch_size=256, seed=1)
    b = load_dataset("digits", batch_size=256, seed=1)
    c = load_dataset("digits", batch_size=256, seed=2)
    a1, a2 = arrays(a.train)[0], arrays(a.train)[0]
    b1, b2 = arrays(b.train)[0], arrays(b.train)[0]
    assert not np.array_equal(a1, a2)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, arrays(c.train)[0])
    # Evaluation splits are never augmented nor shuffled.
    np.testing.assert_array_equal(arrays(a.test)[0], arrays(a.test)[0])


def test_flip_option():
    plain = load_dataset("digits", batch_size=2000, augment=False, validation_split=0)
    flipped = load_dataset("digits", batch_size=2000, pad=0, flip=True, validation_split=0)
    x0, x1 = arrays(plain.train)[0], arrays(flipped.train)[0]
    same = np.all(x0 == x1, axis=(1, 2, 3))
    mirrored = np.all(x0[:, :, ::-1] == x1, axis=(1, 2, 3))
    assert np.all(same | mirrored)
    assert 0.3 < np.mean(~same) < 0.7  # about half flipped (symmetric digits count as same)


def test_tfds_path_on_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=24):
        ds = load_dataset("cifar10", batch_size=8, data_dir=str(tmp_path))
        x, y = next(ds.train.as_numpy_iterator())
        x_test, y_test = arrays(ds.test)
    assert ds.input_shape == (32, 32, 3) and ds.num_classes == 10 and len(ds.class_names) == 10
    assert ds.augmentation == {"recipe": "cifar", "pad": 4, "flip": True, "scale": None, "ratio": None, "fit": "stretch"}
    assert x.shape == (8, 32, 32, 3) and x.dtype == np.float32 and y.dtype == np.int64
    assert 0 <= x.min() and x.max() <= 255 and np.all((0 <= y) & (y < 10))
    assert x_test.shape == (ds.test_count, 32, 32, 3) and ds.test_count > 0
    assert len(ds.mean) == len(ds.std) == 3


def test_tfds_resize_and_grayscale_on_mock_data():
    with tfds.testing.mock_data(num_examples=10):
        ds = load_dataset("mnist", image_size=16, batch_size=4, validation_split=0)
        x, _ = next(ds.train.as_numpy_iterator())
    assert ds.input_shape == (16, 16, 1) and x.shape == (4, 16, 16, 1)
    assert ds.augmentation["flip"] is False and ds.validation is None


@pytest.mark.parametrize(
    "name, message",
    [
        ("cifar11", r"unknown dataset 'cifar11' \(did you mean cifar10"),
        ("./no/such/folder", "does not exist"),
        ("", "non-empty"),
    ],
)
def test_bad_dataset_names(name, message):
    with pytest.raises(ValueError, match=message):
        check_dataset(name)


def test_check_dataset_and_bad_arguments(tmp_path):
    assert check_dataset("digits") == ("digits", "digits")
    assert check_dataset("tfds:eurosat") == ("tfds", "eurosat")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        check_dataset(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="data_dir"):
        check_dataset("cifar10", data_dir=tmp_path / "missing")
    with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1; received batch_size=0"):
        load_dataset("digits", batch_size=0)
    with pytest.raises(ValueError, match=r"validation_split must be a fraction in \[0, 1\)"):
        load_dataset("digits", validation_split=1.0)


def test_preprocessing_standardises_the_training_split(digits):
    layer = preprocessing(digits)
    x, _ = arrays(load_dataset("digits", batch_size=512, augment=False).train)
    z = np.asarray(layer(x))
    assert abs(z.mean()) < 1e-3 and abs(z.std() - 1) < 1e-3
    with pytest.raises(ValueError, match="positive stds"):
        preprocessing(([0.0, 1.0], [1.0]))
