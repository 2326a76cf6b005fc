"""TFLite Metadata, so that MediaPipe's ImageClassifier (and other metadata readers) run our files as they are.

MediaPipe Tasks' ``ImageClassifier`` (Python, Android, iOS and the web share one C++ core)
reads three things from a TFLite file besides the graph: how to turn camera pixels into the
input tensor (``NormalizationOptions``), that the input is an RGB image (``ImageProperties``),
and the class names (a labels file packed into the model). This module writes them following
the published schema (``metadata_schema.fbs`` of TensorFlow Lite Support, version 1.5.0; file
identifier ``M001``):

* the metadata flatbuffer goes into the model's ``metadata`` list under the name
  ``TFLITE_METADATA``, pointing at a new buffer;
* the labels (``labels.txt``, one class name per line, line ``i`` naming class ``i``) are an
  associated file of type ``TENSOR_AXIS_LABELS`` on the output tensor, stored in a zip archive
  appended to the flatbuffer: the TFLite runtime ignores trailing bytes, and metadata readers
  open the file as a zip.

The flatbuffer is built with the ``flatbuffers`` package that TensorFlow installs, and the
model is rewritten with ``ai_edge_litert``'s generated schema (its object API), so writing
metadata needs neither MediaPipe nor TFLite Support (whose writer does not import from the
``mediapipe`` 1.2.3 wheel).

Our models take raw pixels 0-255 and normalise inside the graph, so the metadata says
mean 0 and std 1: for a float32 input, MediaPipe then feeds the pixel values themselves. A
uint8 input (an int8 file exported with ``int8_io="uint8"``) gets the pixel bytes as they are;
MediaPipe applies no normalisation to it (its rule for quantized inputs), and the metadata says
mean 0 and std 1 there too, which is what the bytes mean. MediaPipe accepts float32 and uint8
inputs only: an ``int8_io="int8"`` file carries correct metadata but MediaPipe refuses it.

MediaPipe feeds RGB only. A grey model is exported behind :class:`RGBToGrey` (see
:func:`rgb_input_model`), so its file takes RGB images, which the graph converts as the
package's image decoder converts colour files for grey models.

Example:
>>> content = add_metadata(open("digits_float32.tflite", "rb").read(), ["0", "1"], name="digits")  # doctest: +SKIP
>>> read_metadata(content)["labels"]  # doctest: +SKIP
['0', '1']
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import flatbuffers
import keras
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from flatbuffers import number_types
from flatbuffers.table import Table

__all__ = [
    "GREY_WEIGHTS", "LABELS_FILE", "MEDIAPIPE_INPUT_TYPES", "METADATA_NAME", "RGBToGrey", "add_metadata",
    "read_labels", "read_metadata", "rgb_calibration_images", "rgb_input_model",
]

METADATA_NAME = "TFLITE_METADATA"  # the name metadata readers look for in the model's metadata list
# Our own entry in the model's metadata list: the channels of the model behind the RGB input
# ("1" for a grey model behind RGBToGrey), so our loaders can feed it grey images replicated.
MODEL_CHANNELS_NAME = "keras_resnet.model_channels"
LABELS_FILE = "labels.txt"
MIN_PARSER_VERSION = "1.0.0"  # every field written here is in the schema's first version
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, as keras_resnet.images decodes colour for grey models
# MediaPipe refuses other input types ("Type mismatch for input tensor ... Requested one of these
# types: uint8/float32, got INT8.").
MEDIAPIPE_INPUT_TYPES = ("float32", "uint8")
_IDENTIFIER = b"M001"
_TFLITE_IDENTIFIER = b"TFL3"

# The schema's enum values and the slot (declaration order) of each field used.
_RGB, _TENSOR_AXIS_LABELS = 1, 2
_FEATURE_PROPERTIES, _IMAGE_PROPERTIES = 1, 2  # ContentProperties union
_NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions union
_COLOR_SPACES = {0: "UNKNOWN", 1: "RGB", 2: "GRAYSCALE"}
_TENSOR_TYPES = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


# ---- the grey model's RGB input -------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="keras_resnet")
class RGBToGrey(keras.layers.Layer):
    """RGB pixels ``(..., 3)`` to one grey channel ``(..., 1)`` with the luma weights 0.299, 0.587, 0.114.

    The weights (ITU-R BT.601 luma; ``tf.image.rgb_to_grayscale``'s to three decimals) are those
    :mod:`keras_resnet.images` uses when it reads a colour file for a grey model, so a colour photo gives the grey levels the
    model was trained and evaluated on (before the decoder's rounding to integers: the two
    differ by at most half a grey level), not a plain average of the channels. Computed as
    ``g + 0.299 (r - g) + 0.114 (b - g)``, which is exactly ``g`` when ``r == g == b``: a grey
    image replicated into three channels gives the grey model's input bit for bit.

    Example:
    >>> import numpy as np
    >>> grey = RGBToGrey()(np.array([[[[10.0, 10.0, 10.0], [255.0, 0.0, 0.0]]]], "float32")).numpy()
    >>> grey.shape, float(grey[0, 0, 0, 0]), round(float(grey[0, 0, 1, 0]), 3)
    ((1, 1, 2, 1), 10.0, 76.245)
    """

    def call(self, images):
        images = keras.ops.cast(images, self.compute_dtype)
        r, g, b = images[..., 0:1], images[..., 1:2], images[..., 2:3]
        return g + GREY_WEIGHTS[0] * (r - g) + GREY_WEIGHTS[2] * (b - g)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)


def rgb_input_model(model: keras.Model) -> keras.Model:
    """``model`` behind an RGB input: grey models get :class:`RGBToGrey` in front, RGB models are returned as they are.

    Args:
        model: a built image classifier with a fixed input ``(height, width, 1 or 3)``.

    Returns:
        A model taking ``(batch, height, width, 3)`` raw pixels with ``model``'s outputs.

    Example:
    >>> from keras_resnet.models import ResNet
    >>> rgb_input_model(ResNet(depth=8, input_shape=(8, 8, 1), classes=3)).input_shape
    (None, 8, 8, 3)
    """
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise ValueError(f"an RGB input needs a model taking (height, width, 1 or 3 channels); model {model.name!r} "
                         f"takes {(None, *shape)}")
    if shape[-1] == 3:
        return model
    inputs = keras.Input((*shape[:2], 3), name="rgb_images")
    return keras.Model(inputs, model(RGBToGrey(name="rgb_to_grey")(inputs)), name=model.name)


def rgb_calibration_images(images: np.ndarray) -> np.ndarray:
    """Calibration images for :func:`rgb_input_model`: grey ones replicated to RGB, plus a black and a white image.

    The two extremes make the int8 input's range exactly 0..255, so a uint8 input has scale 1
    and zero point 0: the pixel bytes MediaPipe feeds are the raw pixels the model expects
    (calibrated on the images alone, the scale would follow their brightest pixel).

    Example:
    >>> rgb_calibration_images(np.zeros((5, 8, 8, 1), "float32")).shape
    (7, 8, 8, 3)
    """
    images = np.asarray(images, "float32")
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be a batch (n, height, width, 1 or 3 channels); received shape {images.shape}")
    images = np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images
    extremes = np.stack([np.zeros(images.shape[1:], "float32"), np.full(images.shape[1:], 255, "float32")])
    return np.concatenate([images, extremes])


# ---- writing ---------------------------------------------------------------------------------------

def _strings(b: flatbuffers.Builder, items: Sequence[int]) -> int:
    """A vector of offsets (tables or strings) already written to ``b``."""
    b.StartVector(4, len(items), 4)
    for item in reversed(items):
        b.PrependUOffsetTRelative(item)
    return b.EndVector()


def _table(b: flatbuffers.Builder, fields: int, offsets: dict[int, int] | None = None,
           bytes_: dict[int, int] | None = None) -> int:
    """A table with ``offsets`` (slot -> offset of a string, vector or table) and ``bytes_`` (slot -> byte)."""
    b.StartObject(fields)
    for slot, value in (offsets or {}).items():
        b.PrependUOffsetTRelativeSlot(slot, value, 0)
    for slot, value in (bytes_ or {}).items():
        b.PrependUint8Slot(slot, value, 0)
    return b.EndObject()


def _metadata_buffer(name: str, description: str, version: str | None, author: str | None,
                     input_type: str, classes: int, output_type: str) -> bytes:
    b = flatbuffers.Builder(1024)
    s = b.CreateString

    def floats(values):
        return b.CreateNumpyVector(np.asarray(values, np.float32))

    # Input: an RGB image; (pixels - 0) / 1, the raw 0-255 values the model normalises itself.
    image_properties = _table(b, 2, bytes_={0: _RGB})
    input_content = _table(b, 3, {1: image_properties}, {0: _IMAGE_PROPERTIES})
    normalization = _table(b, 2, {0: floats([0.0]), 1: floats([1.0])})
    input_units = _strings(b, [_table(b, 2, {1: normalization}, {0: _NORMALIZATION_OPTIONS})])
    input_stats = _table(b, 2, {0: floats([255.0]), 1: floats([0.0])})
    input_tensor = _table(b, 7, {
        0: s("image"),
        1: s(f"RGB image, raw pixel values 0-255 ({input_type}); the model normalises them itself"),
        3: input_content, 4: input_units, 5: input_stats,
    })
    # Output: one probability per class, named by the labels file.
    labels = _table(b, 5, {0: s(LABELS_FILE), 1: s("class names, one per line: line i names class i")},
                    {2: _TENSOR_AXIS_LABELS})
    output_content = _table(b, 3, {1: _table(b, 0)}, {0: _FEATURE_PROPERTIES})
    output_stats = _table(b, 2, {0: floats([1.0]), 1: floats([0.0])})
    output_tensor = _table(b, 7, {
        0: s("probability"),
        1: s(f"probabilities of the {classes} classes ({output_type}, softmax)"),
        3: output_content, 5: output_stats, 6: _strings(b, [labels]),
    })
    subgraph = _table(b, 10, {
        2: _strings(b, [input_tensor]), 3: _strings(b, [output_tensor]),
    })
    fields = {0: s(name), 1: s(description), 3: _strings(b, [subgraph]), 7: s(MIN_PARSER_VERSION)}
    if version is not None:
        fields[2] = s(version)
    if author is not None:
        fields[4] = s(author)
    b.Finish(_table(b, 8, fields), file_identifier=_IDENTIFIER)
    return bytes(b.Output())


def _model_bytes(model: bytes | str | os.PathLike) -> bytes:
    content = bytes(model) if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
    if content[4:8] != _TFLITE_IDENTIFIER:
        raise ValueError("not a TFLite model (no TFL3 flatbuffer identifier at bytes 4-8)")
    return content


def _io_tensor(root, which: str):
    subgraph = root.Subgraphs(0)
    indices = subgraph.InputsAsNumpy() if which == "input" else subgraph.OutputsAsNumpy()
    if len(indices) != 1:
        raise ValueError(f"TFLite metadata for an image classifier needs one {which} tensor; the model has {len(indices)}")
    return subgraph.Tensors(int(indices[0]))


def add_metadata(
    model: bytes | str | os.PathLike,
    class_names: Sequence[str] | None,
    *,
    name: str,
    description: str | None = None,
    version: str | int | None = None,
    author: str | None = None,
    grey_model: bool = False,
) -> bytes:
    """A TFLite image classifier with TFLite Metadata and its labels file, as MediaPipe's ImageClassifier reads them.

    Writes the model's name, description and version; the input's metadata (an RGB image,
    ``NormalizationOptions`` mean 0 and std 1 because the model takes raw pixels 0-255, stats
    0..255); the output's (probabilities, stats 0..1) with ``labels.txt`` as its
    ``TENSOR_AXIS_LABELS`` file, packed into the returned bytes. Metadata already present under
    ``TFLITE_METADATA`` and a zip already appended are replaced.

    Args:
        model: the ``.tflite`` bytes or file: one ``(1, height, width, 3)`` RGB image input,
            float32, uint8 or int8, and one ``(1, classes)`` probability output.
        class_names: one non-empty one-line string per class; None names them ``"0"``, ``"1"``, ...
        name: the model's name (``ModelMetadata.name``).
        description: what it does; default a sentence naming the input size and classes.
        version: the model's version (``ModelMetadata.version``), e.g. the export version.
        author: optional ``ModelMetadata.author``.
        grey_model: the file is a grey model behind :func:`rgb_input_model`; recorded (as
            ``keras_resnet.model_channels`` in the model's metadata list) for our loaders.

    Returns:
        The new file's bytes. ValueError names what does not fit: an input that is not an RGB
        image, class names that do not match the output.

    Example:
    >>> content = add_metadata("tiny_1_float32.tflite", ["left", "middle", "right"], name="tiny", version=1)  # doctest: +SKIP
    >>> Path("tiny_1_float32.tflite").write_bytes(content)  # doctest: +SKIP
    """
    content = _model_bytes(model)
    root = schema.Model.GetRootAsModel(content, 0)
    image, output = _io_tensor(root, "input"), _io_tensor(root, "output")
    shape, out_shape = image.ShapeAsNumpy().tolist(), output.ShapeAsNumpy().tolist()
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"MediaPipe's ImageClassifier feeds RGB images (1, height, width, 3); the model's input "
                         f"has shape {shape}. Export grey models behind rgb_input_model()")
    input_type, output_type = _TENSOR_TYPES[image.Type()], _TENSOR_TYPES[output.Type()]
    if input_type not in ("float32", "uint8", "int8"):
        raise ValueError(f"an image input must be float32, uint8 or int8; the model's is {input_type}")
    if class_names is None:
        class_names = [str(i) for i in range(out_shape[-1])]
    names = list(class_names) if not isinstance(class_names, str) else None
    if names is None or len(names) != out_shape[-1] or not all(isinstance(n, str) and n and "\n" not in n for n in names):
        raise ValueError(f"class_names must be {out_shape[-1]} non-empty one-line strings (one per output class); "
                         f"received {class_names!r}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string; received name={name!r}")
    if description is None:
        description = (f"Image classifier (keras-resnet): an RGB image of {shape[2]}x{shape[1]} pixels, "
                       f"probabilities of {len(names)} classes")
    buffer = _metadata_buffer(name, description, None if version is None else str(version), author,
                              input_type, len(names), output_type)

    # Rewrite the model with one more buffer and a metadata entry pointing at it.
    flat = _strip_zip(content)
    model_t = schema.ModelT.InitFromPackedBuf(flat, 0)
    ours = {METADATA_NAME: buffer, MODEL_CHANNELS_NAME: b"1" if grey_model else b"3"}
    model_t.metadata = [m for m in (model_t.metadata or []) if _text(m.name) not in ours]
    model_t.buffers = list(model_t.buffers or [])
    for key, data in ours.items():
        entry = schema.BufferT()
        entry.data = np.frombuffer(data, np.uint8)
        model_t.buffers.append(entry)
        metadata = schema.MetadataT()
        metadata.name, metadata.buffer = key, len(model_t.buffers) - 1
        model_t.metadata.append(metadata)
    b = flatbuffers.Builder(len(flat) + len(buffer) + 1024)
    b.Finish(model_t.Pack(b), file_identifier=_TFLITE_IDENTIFIER)

    # The labels go into a zip appended to the flatbuffer, stored (not deflated) as readers expect.
    out = io.BytesIO(bytes(b.Output()))
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", zipfile.ZIP_STORED) as archive:
        archive.writestr(LABELS_FILE, "\n".join(names) + "\n")
    return out.getvalue()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _strip_zip(content: bytes) -> bytes:
    """The flatbuffer without an appended zip (from an earlier :func:`add_metadata`)."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            start = min((info.header_offset for info in archive.infolist()), default=len(content))
    except zipfile.BadZipFile:
        return content
    return content[:start]


# ---- reading ---------------------------------------------------------------------------------------

class _Reader:
    """Reads fields of one table of the metadata flatbuffer by slot."""

    def __init__(self, table: Table):
        self.t = table

    def _offset(self, slot: int) -> int:
        return self.t.Offset(4 + 2 * slot)

    def string(self, slot: int) -> str | None:
        o = self._offset(slot)
        return self.t.String(o + self.t.Pos).decode() if o else None

    def byte(self, slot: int) -> int:
        o = self._offset(slot)
        return self.t.Get(number_types.Uint8Flags, o + self.t.Pos) if o else 0

    def floats(self, slot: int) -> list[float] | None:
        o = self._offset(slot)
        return self.t.GetVectorAsNumpy(number_types.Float32Flags, o).tolist() if o else None

    def table(self, slot: int) -> _Reader | None:
        o = self._offset(slot)
        return _Reader(Table(self.t.Bytes, self.t.Indirect(o + self.t.Pos))) if o else None

    def union(self, slot: int) -> _Reader | None:
        o = self._offset(slot)
        if not o:
            return None
        table = Table(bytearray(), 0)
        self.t.Union(table, o)
        return _Reader(table)

    def tables(self, slot: int) -> list[_Reader]:
        o = self._offset(slot)
        if not o:
            return []
        start = self.t.Vector(o)
        return [_Reader(Table(self.t.Bytes, self.t.Indirect(start + 4 * j))) for j in range(self.t.VectorLen(o))]


def _model_metadata(content: bytes, name: str) -> bytes | None:
    """The buffer of entry ``name`` of the model's metadata list; None without one."""
    root = schema.Model.GetRootAsModel(content, 0)
    for i in range(root.MetadataLength()):
        entry = root.Metadata(i)
        if entry.Name() == name.encode():
            return root.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    return None


def _tensor(reader: _Reader) -> dict:
    content = reader.table(3)
    kind = content.byte(0) if content else 0
    props = content.union(1) if content else None
    units = []
    for unit in reader.tables(4):
        options = unit.union(1)
        if unit.byte(0) == _NORMALIZATION_OPTIONS and options:
            units.append({"normalization": {"mean": options.floats(0), "std": options.floats(1)}})
    stats = reader.table(5)
    return {
        "name": reader.string(0),
        "description": reader.string(1),
        "color_space": _COLOR_SPACES.get(props.byte(0)) if kind == _IMAGE_PROPERTIES and props else None,
        "process_units": units,
        "stats": {"min": stats.floats(1), "max": stats.floats(0)} if stats else None,
        "associated_files": [{"name": f.string(0), "type": f.byte(2)} for f in reader.tables(6)],
    }


def read_metadata(model: bytes | str | os.PathLike) -> dict | None:
    """The TFLite Metadata of a model, as a dict; None when it has none.

    Returns:
        ``{"name", "description", "version", "min_parser_version", "inputs", "outputs",
        "labels", "model_channels"}``: ``inputs`` and ``outputs`` list one dict per tensor (``name``,
        ``description``, ``color_space``, ``process_units`` with their ``normalization``
        mean and std, ``stats``, ``associated_files``); ``labels`` are the class names of the
        packed labels file (None without one); ``model_channels`` is 1 for a grey model
        behind an RGB input, else 3.

    Example:
    >>> meta = read_metadata("saved_models/digits/tflite/digits_1_int8.tflite")  # doctest: +SKIP
    >>> meta["inputs"][0]["color_space"], meta["inputs"][0]["process_units"]  # doctest: +SKIP
    ('RGB', [{'normalization': {'mean': [0.0], 'std': [1.0]}}])
    """
    content = _model_bytes(model)
    buffer = _model_metadata(content, METADATA_NAME)
    if buffer is None:
        return None
    if buffer[4:8] != _IDENTIFIER:
        raise ValueError(f"the model's {METADATA_NAME} buffer is not a metadata flatbuffer (no M001 identifier)")
    root = _Reader(Table(bytearray(buffer), flatbuffers.encode.Get(number_types.UOffsetTFlags.packer_type, buffer, 0)))
    subgraphs = root.tables(3)
    return {
        "name": root.string(0),
        "description": root.string(1),
        "version": root.string(2),
        "min_parser_version": root.string(7),
        "inputs": [_tensor(t) for t in subgraphs[0].tables(2)] if subgraphs else [],
        "outputs": [_tensor(t) for t in subgraphs[0].tables(3)] if subgraphs else [],
        "labels": read_labels(content),
        "model_channels": int(_model_metadata(content, MODEL_CHANNELS_NAME) or b"3"),
    }


def read_labels(model: bytes | str | os.PathLike) -> list[str] | None:
    """The class names packed into a TFLite file as ``labels.txt``; None when it carries none.

    Example:
    >>> read_labels("saved_models/digits/tflite/digits_1_float32.tflite")  # doctest: +SKIP
    ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']
    """
    content = _model_bytes(model)
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            text = archive.read(LABELS_FILE).decode("utf-8")
    except (zipfile.BadZipFile, KeyError):
        return None
    return [line for line in text.splitlines() if line]
