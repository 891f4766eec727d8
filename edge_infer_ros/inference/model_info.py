"""
Load, verify and describe a YOLO ONNX model before any inference engine touches it.

Why a separate step: a wrong, truncated or swapped model file must fail at start-up with a
message that names the file and says what was expected, not as a shape error deep inside an
engine on the first frame. :func:`load_model_info` hashes the file, refuses it when the hash
differs from the one its metadata (or the caller) expects, parses the graph without loading
weights' external data, and works out input size, dtype, output layout and class names, from
the metadata JSON beside the model when there is one, else from the graph itself and
Ultralytics' ``metadata_props``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from edge_infer_ros.core.validate import MAX_CLASS_NAME
from edge_infer_ros.inference import yolo
import onnx

#: Values the preprocessing understands.
COLOR_ORDERS = ('rgb', 'bgr')
NORMALIZATIONS = ('div255',)
LAYOUT_CHOICES = ('auto',) + yolo.LAYOUTS

_DTYPES: dict[int, str] = {onnx.TensorProto.FLOAT: 'float32', onnx.TensorProto.FLOAT16: 'float16'}
# Ultralytics detection heads predict at strides 8, 16 and 32.
_STRIDES = (8, 16, 32)
_MAX_LITERAL = 1 << 20


class ModelError(Exception):
    """A model file is missing, corrupt, different from what was expected, or unusable."""


@dataclass(frozen=True)
class ModelInfo:
    """
    Everything the pipeline needs to know about one verified detector model.

    Shapes are static ints (dynamic batch resolved to 1); ``input_shape`` is (N, C, H, W).
    """

    path: str
    sha256: str
    input_name: str
    input_shape: tuple[int, int, int, int]
    input_dtype: str
    output_name: str
    output_shape: tuple[int, ...]
    layout: str
    class_names: tuple[str, ...]
    color_order: str = 'rgb'
    letterbox_pad_value: int = 114
    normalize: str = 'div255'
    output_dtype: str = 'float32'
    #: the metadata JSON that was applied, '' when none
    metadata_path: str = ''
    #: things worth logging once at start-up (extra outputs ignored, derived sizes, ...)
    notes: tuple[str, ...] = ()
    #: False when neither the metadata nor the caller gave a sha256 to check the file against
    pinned: bool = True
    #: the file's bytes that were hashed: backends load these, never the path again (a file
    #: swapped after the check would otherwise run under the checked sha256)
    data: bytes = field(default=b'', repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        """Return the number of classes the model predicts."""
        return len(self.class_names)

    @property
    def input_hw(self) -> tuple[int, int]:
        """Return the model input (height, width) in pixels."""
        return self.input_shape[2], self.input_shape[3]

    @property
    def num_anchors(self) -> int:
        """Return the number of candidate boxes per frame (N)."""
        return self.output_shape[2] if self.layout == 'yolov8' else self.output_shape[1]


def file_sha256(path: Union[str, 'os.PathLike[str]']) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks so large files never sit in memory."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _dims(value: onnx.ValueInfoProto) -> Optional[list[Optional[int]]]:
    """Return static dims of a graph value (None if dynamic), or None for an unknown rank."""
    tensor = value.type.tensor_type
    if not value.type.HasField('tensor_type') or not tensor.HasField('shape'):
        return None
    return [d.dim_value if d.HasField('dim_value') and d.dim_value > 0 else None
            for d in tensor.shape.dim]


def _literal(text: str) -> Any:
    """Parse a Python literal from untrusted model metadata (no code runs); None if invalid."""
    if len(text) > _MAX_LITERAL:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _ultralytics_names(props: dict[str, str]) -> Optional[list[str]]:
    names = _literal(props['names']) if 'names' in props else None
    if isinstance(names, dict) and names and all(isinstance(k, int) for k in names):
        if sorted(names) == list(range(len(names))):
            return [str(names[i]) for i in range(len(names))]
        return None
    if isinstance(names, (list, tuple)) and names:
        return [str(n) for n in names]
    return None


def _ultralytics_imgsz(props: dict[str, str]) -> Optional[tuple[int, int]]:
    size = _literal(props['imgsz']) if 'imgsz' in props else None
    if isinstance(size, int) and size > 0:
        return size, size
    if (isinstance(size, (list, tuple)) and len(size) == 2
            and all(isinstance(s, int) and s > 0 for s in size)):
        return int(size[0]), int(size[1])
    return None


def _read_metadata(path: Path, model: Path) -> dict[str, Any]:
    try:
        with open(path, encoding='utf-8') as f:
            meta = json.load(f)
    except OSError as e:
        raise ModelError(f'metadata file {path} for model {model} cannot be read: {e}') from e
    except ValueError as e:
        raise ModelError(f'metadata file {path} for model {model} is not valid JSON: '
                         f'{e}') from e
    if not isinstance(meta, dict):
        raise ModelError(f'metadata file {path} for model {model} must hold a JSON object, '
                         f'got {type(meta).__name__}')
    return meta


def _find(values: Sequence[onnx.ValueInfoProto], name: str, what: str, model: Path,
          source: str) -> onnx.ValueInfoProto:
    for value in values:
        if value.name == name:
            return value
    names = [v.name for v in values]
    raise ModelError(f'model {model} has no {what} named {name!r} (from {source}); '
                     f'its {what}s are {names}')


def _input_shape(model: Path, name: str, dims: Optional[list[Optional[int]]],
                 meta_shape: Any, imgsz: Optional[tuple[int, int]],
                 source: str, json_hint: Path) -> tuple[int, int, int, int]:
    if meta_shape is not None:
        if (not isinstance(meta_shape, (list, tuple)) or len(meta_shape) != 4
                or not all(isinstance(d, int) and d > 0 for d in meta_shape)):
            raise ModelError(f'{source} gives input_shape {meta_shape!r} for model {model}: '
                             'expected 4 positive ints [1, 3, H, W]')
        if dims is None:
            dims = [None] * 4
        if len(dims) == 4:
            for i, (graph, given) in enumerate(zip(dims, meta_shape)):
                if graph is not None and graph != given:
                    raise ModelError(f'model {model} input {name!r} has shape {dims} but '
                                     f'{source} says {list(meta_shape)} (dim {i} differs)')
            dims = list(meta_shape)
    if dims is None:
        raise ModelError(f'model {model} input {name!r} has no shape: expected (1, 3, H, W); '
                         f'give input_shape in the metadata file {json_hint}')
    if len(dims) != 4:
        raise ModelError(f'model {model} input {name!r} has shape {dims}: expected 4-D '
                         '(N, 3, H, W)')
    batch, channels, height, width = dims
    if (height is None or width is None) and imgsz is not None:
        height = imgsz[0] if height is None else height
        width = imgsz[1] if width is None else width
    if height is None or width is None:
        raise ModelError(f'model {model} input {name!r} has dynamic spatial size {dims}: '
                         'export it with a static input size (e.g. imgsz=320) or give '
                         f'input_shape in the metadata file {json_hint}')
    if batch not in (None, 1):
        raise ModelError(f'model {model} input {name!r} has batch {batch}: expected 1')
    if channels not in (None, 3):
        raise ModelError(f'model {model} input {name!r} has {channels} channels: expected 3 '
                         '(a colour image, N, 3, H, W)')
    return 1, 3, int(height), int(width)


def _output_shape(model: Path, name: str, dims: Optional[list[Optional[int]]],
                  hw: tuple[int, int], layout: str, num_classes: Optional[int],
                  notes: list[str]) -> tuple[int, ...]:
    """Return the static output shape, deriving dynamic dims from the input size if possible."""
    if dims is None:
        raise ModelError(f'model {model} output {name!r} has no shape: expected '
                         '[1, 4+C, N] (YOLOv8/YOLO11) or [1, N, 5+C] (YOLOv5)')
    dims = list(dims)
    if dims and dims[0] is None:
        dims[0] = 1
    if all(d is not None for d in dims):
        return tuple(int(d) for d in dims if d is not None)
    if len(dims) == 3:
        # e.g. Ultralytics dynamic export: ['batch', 84, 'anchors'].
        if layout == 'auto':
            if dims[1] is not None and dims[2] is None:
                layout = 'yolov8'
            elif dims[2] is not None and dims[1] is None:
                layout = 'yolov5'
        if layout in yolo.LAYOUTS:
            cells = sum(-(-hw[0] // s) * -(-hw[1] // s) for s in _STRIDES)
            anchors = cells if layout == 'yolov8' else 3 * cells
            channels = None
            if num_classes:
                channels = num_classes + (4 if layout == 'yolov8' else 5)
            if layout == 'yolov8':
                dims[1] = dims[1] if dims[1] is not None else channels
                dims[2] = dims[2] if dims[2] is not None else anchors
            else:
                dims[1] = dims[1] if dims[1] is not None else anchors
                dims[2] = dims[2] if dims[2] is not None else channels
            if all(d is not None for d in dims):
                notes.append(f'output {name!r} has dynamic dims; derived {dims} from the '
                             f'{hw[0]}x{hw[1]} input and strides {_STRIDES} (verified at load)')
                return tuple(int(d) for d in dims if d is not None)
    raise ModelError(f'model {model} output {name!r} has dynamic shape {dims} that cannot be '
                     'derived: export with static shapes or give layout and class_names in '
                     'the metadata file')


def _choice(value: Any, choices: Sequence[str], what: str, source: str, model: Path) -> str:
    if value not in choices:
        raise ModelError(f'{source} gives {what} {value!r} for model {model}: expected one of '
                         f'{tuple(choices)}')
    return str(value)


def load_model_info(path: Union[str, 'os.PathLike[str]'],
                    metadata_path: Optional[Union[str, 'os.PathLike[str]']] = None,
                    expected_sha256: str = '', layout: str = 'auto',
                    class_names: Sequence[str] = ()) -> ModelInfo:
    """
    Verify a YOLO ONNX model file and describe it; raise ModelError naming the file if unusable.

    ``metadata_path`` None (or '') means ``<model without .onnx>.json`` when it exists. The
    metadata (keys sha256, input_name, input_shape, output_name, layout, class_names,
    color_order, normalize, letterbox_pad_value) and a non-empty ``expected_sha256`` must
    agree with the file's sha256, else the file is refused. A ``layout`` other than 'auto' and
    non-empty ``class_names`` override the metadata; everything is checked against the graph.
    """
    model = Path(os.fspath(path))
    if not model.exists():
        raise ModelError(f'model file {model} not found')
    if not model.is_file():
        raise ModelError(f'model file {model} is not a regular file')
    try:
        data = model.read_bytes()  # once: what is hashed is what is parsed and loaded
        sha256 = hashlib.sha256(data).hexdigest()
    except OSError as e:
        raise ModelError(f'model file {model} cannot be read: {e}') from e
    expected = (expected_sha256 or '').strip().lower()
    if expected and expected != sha256:
        raise ModelError(f'model file {model} sha256 is {sha256}, expected_sha256 expects '
                         f'{expected}: refusing a tampered or different file')

    json_hint = model.with_suffix('.json')
    meta: dict[str, Any] = {}
    meta_file: Optional[Path] = None
    if metadata_path is not None and os.fspath(metadata_path) != '':
        meta_file = Path(os.fspath(metadata_path))
        if not meta_file.is_file():
            raise ModelError(f'metadata file {meta_file} for model {model} not found')
    elif json_hint.is_file() and json_hint != model:
        meta_file = json_hint
    if meta_file is not None:
        meta = _read_metadata(meta_file, model)
        meta_sha = str(meta.get('sha256') or '').strip().lower()
        if meta_sha and meta_sha != sha256:
            raise ModelError(f'model file {model} sha256 is {sha256}, metadata {meta_file} '
                             f'expects {meta_sha}: refusing a tampered or different file')
    source = f'metadata {meta_file}'
    notes: list[str] = []
    pinned = bool(expected) or bool(meta.get('sha256'))
    if not pinned:
        where = f'metadata {meta_file} has no sha256' if meta_file is not None else \
            f'no metadata file {json_hint.name}'
        notes.append(f'{where} and model_sha256 is empty: the model file is not pinned '
                     f'(its sha256 is {sha256})')

    try:
        proto = onnx.load_model_from_string(data)
    except Exception as e:  # noqa: B902 - protobuf raises many types; any of them means corrupt
        raise ModelError(f'model file {model} is not a valid ONNX model (truncated or corrupt): '
                         f'{type(e).__name__}: {e}') from e
    graph = proto.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    if not inputs or not graph.output or not graph.node:
        raise ModelError(f'model file {model} is not a valid ONNX model (truncated or corrupt): '
                         f'graph has {len(inputs)} inputs, {len(graph.output)} outputs and '
                         f'{len(graph.node)} nodes')
    props = {p.key: p.value for p in proto.metadata_props}

    # Input.
    if 'input_name' in meta:
        image = _find(inputs, str(meta['input_name']), 'input', model, source)
    elif len(inputs) == 1:
        image = inputs[0]
    else:
        raise ModelError(f'model {model} has {len(inputs)} inputs {[v.name for v in inputs]}: '
                         'expected one image input (1, 3, H, W); name it with input_name in '
                         f'the metadata file {json_hint}')
    elem = image.type.tensor_type.elem_type
    if elem not in _DTYPES:
        raise ModelError(f'model {model} input {image.name!r} has element type '
                         f'{onnx.TensorProto.DataType.Name(elem)}: expected float32 or float16')
    input_shape = _input_shape(model, image.name, _dims(image), meta.get('input_shape'),
                               _ultralytics_imgsz(props), source, json_hint)

    # Class names and layout, before the output shape (a dynamic one is derived from them).
    names: Optional[list[str]] = None
    if class_names:
        names = [str(n) for n in class_names]
        names_source = 'the class_names parameter'
    elif 'class_names' in meta:
        if not isinstance(meta['class_names'], list) or not meta['class_names']:
            raise ModelError(f'{source} gives class_names {meta["class_names"]!r} for model '
                             f'{model}: expected a non-empty list of names')
        names = [str(n) for n in meta['class_names']]
        names_source = source
    else:
        names = _ultralytics_names(props)
        names_source = f'the names in {model} metadata_props'
        if names is None and 'names' in props:
            notes.append(f'ignored unparsable metadata_props names {props["names"][:80]!r}')
    if layout not in LAYOUT_CHOICES:
        raise ModelError(f'layout {layout!r} requested for model {model}: expected one of '
                         f'{LAYOUT_CHOICES}')
    chosen = layout
    layout_source = 'the layout parameter'
    if chosen == 'auto' and 'layout' in meta:
        chosen = _choice(meta['layout'], LAYOUT_CHOICES, 'layout', source, model)
        layout_source = source

    # Output.
    if 'output_name' in meta:
        output = _find(graph.output, str(meta['output_name']), 'output', model, source)
    else:
        output = graph.output[0]
        if len(graph.output) > 1:
            notes.append(f'model has {len(graph.output)} outputs; using the first, '
                         f'{output.name!r}')
    out_elem = output.type.tensor_type.elem_type
    if out_elem not in _DTYPES:
        raise ModelError(f'model {model} output {output.name!r} has element type '
                         f'{onnx.TensorProto.DataType.Name(out_elem)}: expected float32 or '
                         'float16')
    output_shape = _output_shape(model, output.name, _dims(output), input_shape[2:], chosen,
                                 len(names) if names else None, notes)

    shape_text = '[' + ', '.join(str(d) for d in output_shape) + ']'
    if chosen == 'auto':
        try:
            chosen = yolo.detect_layout(output_shape, len(names) if names else None)
        except ValueError as e:
            extra = f' ({len(names)} class names from {names_source})' if names else ''
            raise ModelError(f'model {model} {e}{extra}') from e
    try:
        shape_classes = yolo.layout_num_classes(output_shape, chosen)
    except ValueError as e:
        raise ModelError(f'model {model} {e} (layout from {layout_source})') from e
    if names is None:
        names = [f'class_{i}' for i in range(shape_classes)]
        notes.append(f'no class names in the model or metadata; using class_0..'
                     f'class_{shape_classes - 1}')
    elif any(len(n) > MAX_CLASS_NAME for n in names):
        longest = max(names, key=len)
        raise ModelError(f'{names_source} gives model {model} a class name of {len(longest)} '
                         f'characters ({longest[:40]!r}...): at most {MAX_CLASS_NAME}')
    elif len(names) != shape_classes:
        raise ModelError(f'model {model} output shape {shape_text} as {chosen} has '
                         f'{shape_classes} classes, but {names_source} lists {len(names)} '
                         'class names')

    color_order = _choice(meta.get('color_order', 'rgb'), COLOR_ORDERS, 'color_order', source,
                          model)
    normalize = _choice(meta.get('normalize', 'div255'), NORMALIZATIONS, 'normalize', source,
                        model)
    pad = meta.get('letterbox_pad_value', 114)
    if isinstance(pad, bool) or not isinstance(pad, int) or not 0 <= pad <= 255:
        raise ModelError(f'{source} gives letterbox_pad_value {pad!r} for model {model}: '
                         'expected an int in [0, 255]')
    return ModelInfo(
        path=str(model), sha256=sha256, input_name=image.name, input_shape=input_shape,
        input_dtype=_DTYPES[elem], output_name=output.name, output_shape=output_shape,
        layout=chosen, class_names=tuple(names), color_order=color_order,
        letterbox_pad_value=pad, normalize=normalize, output_dtype=_DTYPES[out_elem],
        metadata_path=str(meta_file) if meta_file is not None else '', notes=tuple(notes),
        pinned=pinned, data=data)
