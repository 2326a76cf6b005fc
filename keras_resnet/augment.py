"""The training augmentation recipes, as per-image functions for ``tf.data`` pipelines.

* ``"cifar"``, the ResNet paper's CIFAR augmentation (He et al., 2015, section 4.2): zero-pad
  an eighth of the image, random crop back to size, random horizontal flip;
* ``"imagenet"``, its ImageNet one (section 3.4, after Szegedy et al., 2015): a random window
  of 8-100% of the area with aspect ratio 3/4-4/3 resized to the input size, and the flip;
* ``"none"``.

Every random choice is drawn from a seed per image and pass (stateless ops), so a seed repeats
a run exactly whatever the threads do, and none of it is part of a model: an exported graph
never augments. :func:`keras_resnet.data.load_dataset` picks the recipe by image size
(:func:`augmentation_settings`); image folders crop while decoding
(:func:`keras_resnet.images.decode_random_crop`). TensorFlow is imported when a function runs.
"""

from __future__ import annotations

AUGMENTATIONS = ("cifar", "imagenet", "none")
IMAGENET_RECIPE_MIN_SIZE = 64  # inputs this large default to the ImageNet augmentation


def augmentation_settings(shape, augment: bool = True, recipe: str | None = None, flip: bool = True,
                          pad: int | None = None) -> dict:
    """What the training pipeline does to images of ``shape`` ``(height, width, channels)``.

    Returns a dict: ``recipe`` (``"cifar"``, ``"imagenet"`` or ``"none"``), ``flip``, the
    cifar recipe's ``pad``, the imagenet recipe's ``scale`` and ``ratio`` ranges, and ``fit``,
    how every split fits images to the input size (:func:`keras_resnet.images.evaluation_fit`).

    Example:
    >>> augmentation_settings((224, 224, 3))["recipe"], augmentation_settings((32, 32, 3))["pad"]
    ('imagenet', 4)
    """
    from keras_resnet.images import CROP_RATIO, CROP_SCALE, evaluation_fit

    if recipe is None:
        recipe = "imagenet" if min(shape[:2]) >= IMAGENET_RECIPE_MIN_SIZE else "cifar"
    if not augment:
        recipe = "none"
    return {
        "recipe": recipe,
        "flip": bool(flip) and recipe != "none",
        "pad": (max(1, shape[0] // 8) if pad is None else pad) if recipe == "cifar" else 0,
        "scale": list(CROP_SCALE) if recipe == "imagenet" else None,
        "ratio": [round(r, 6) for r in CROP_RATIO] if recipe == "imagenet" else None,
        "fit": evaluation_fit(shape[:2]),
    }


# The flip's random stream is the image's seed shifted by this (image numbers stay far below),
# so that it is independent of the crop drawn from the seed itself.
_FLIP_SEED_OFFSET = (0, 1 << 40)


def _split_seed(seed, k, tf):
    return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)[k]


def random_flip(image, seed):
    """Mirrors ``image`` left-right with probability 1/2, drawn from ``seed`` (a ``(2,)`` tensor).

    Not ``keras.layers.RandomFlip``: the Keras layer draws from a generator whose state the
    parallel pipeline would share, while a seed per image keeps every epoch reproducible and
    independent of the thread timing. And not ``tf.image.stateless_random_flip_left_right``,
    whose select over both versions costs several times more than the reverse alone: an empty
    axis list makes ``tf.reverse`` return the image as it is.
    """
    import tensorflow as tf

    mirror = tf.random.stateless_uniform([], seed=tf.cast(seed, tf.int64) + _FLIP_SEED_OFFSET) < 0.5
    return tf.reverse(image, tf.boolean_mask(tf.constant([1]), tf.reshape(mirror, [1])))


def augmenter(settings):
    """``(uint8 image, (2,) seed) -> image``: the recipe's random transformations."""
    import tensorflow as tf

    from keras_resnet.images import random_resized_crop

    pad, flip, recipe = settings["pad"], settings["flip"], settings["recipe"]

    def augment(image, seed):
        if recipe == "imagenet" and image.shape[0] is not None:
            if image.shape.is_fully_defined():  # an image held in memory at the input size
                size = image.shape[:2]
                image = random_resized_crop(image, size, _split_seed(seed, 0, tf))
                image.set_shape([*size, image.shape[-1]])
        if recipe == "cifar" and pad:
            shape = image.shape
            padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
            image = tf.image.stateless_random_crop(padded, size=shape, seed=_split_seed(seed, 1, tf))
        return random_flip(image, seed) if flip else image

    return augment
