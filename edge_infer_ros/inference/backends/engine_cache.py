"""
On-disk cache of serialized TensorRT engines, keyed by everything that makes an engine valid.

Why: building an engine from ONNX takes seconds to minutes on an embedded GPU, so it is done
once and the plan file reused on the next start. A plan is only valid for the exact TensorRT
version and GPU (name and compute capability) that built it, and it bakes in the model weights,
precision, input shape and builder workspace. Loading a stale or foreign plan either fails deep
inside TensorRT or, worse, silently runs an old model, so :meth:`EngineCache.load` returns the
bytes only when the sidecar JSON beside the plan holds exactly the requested key and the plan's
own sha256 (which also refuses truncated files). Writes are atomic (temporary file, fsync,
``os.replace``), so a crash or a concurrent writer never leaves a half-written plan that would
be trusted. Nothing here imports TensorRT: it is plain and tested on any machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
import hashlib
import json
import os
from pathlib import Path
import re
import tempfile
from typing import Any, Optional, Union

#: Version of the sidecar layout; a sidecar of another version is never trusted.
CACHE_FORMAT = 1

#: Precisions an engine can be built with.
PRECISIONS = ('fp32', 'fp16', 'int8')

_SAFE_STEM = re.compile(r'[^A-Za-z0-9._-]+')


def default_cache_dir() -> Path:
    """Return ``$XDG_CACHE_HOME/edge_infer_ros/engines`` (default ``~/.cache/...``)."""
    base = os.environ.get('XDG_CACHE_HOME', '')
    # The XDG spec says a relative value is invalid and must be ignored.
    root = Path(base) if base and os.path.isabs(base) else Path.home() / '.cache'
    return root / 'edge_infer_ros' / 'engines'


def resolve_cache_dir(option: Any) -> Path:
    """Return the cache directory for the ``engine_cache_dir`` option ('' or None: default)."""
    if option is None or str(option).strip() == '':
        return default_cache_dir()
    return Path(os.path.expanduser(str(option)))


@dataclass(frozen=True)
class EngineKey:
    """
    Everything a serialized engine depends on; two keys are equal only if a plan is reusable.

    ``model_name`` is a label for humans (it names the file) and takes no part in equality or
    the digest: the same weights under another file name reuse the engine.
    """

    model_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    input_shape: tuple[int, ...]
    workspace_mb: int
    model_name: str = field(default='model', compare=False)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {PRECISIONS}, got {self.precision!r}')
        # Normalise so a key read back from JSON (lists, str) equals the one built in code.
        object.__setattr__(self, 'input_shape', tuple(int(d) for d in self.input_shape))
        object.__setattr__(self, 'workspace_mb', int(self.workspace_mb))
        object.__setattr__(self, 'model_sha256', str(self.model_sha256).lower())
        object.__setattr__(self, 'compute_capability', str(self.compute_capability))

    def identity(self) -> dict[str, Any]:
        """Return the fields that decide validity (everything but the label), JSON-ready."""
        identity = {}
        for f in fields(self):
            if f.compare:
                value = getattr(self, f.name)
                identity[f.name] = list(value) if isinstance(value, tuple) else value
        return identity

    def digest(self) -> str:
        """Return a stable hex sha256 of the identity fields (canonical JSON, sorted keys)."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(',', ':'))
        return hashlib.sha256(text.encode('utf-8')).hexdigest()

    def to_json(self) -> str:
        """Return the full key (label included) as JSON text."""
        data = asdict(self)
        data['input_shape'] = list(self.input_shape)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> 'EngineKey':
        """Build a key from :meth:`to_json` data; raise ValueError if fields are missing."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data and n != 'model_name']
        if missing:
            raise ValueError(f'engine key lacks {missing}')
        return cls(**{n: data[n] for n in names if n in data})

    @classmethod
    def from_json(cls, text: str) -> 'EngineKey':
        """Parse :meth:`to_json` text."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError('engine key JSON must be an object')
        return cls.from_dict(data)

    def differences(self, other: 'EngineKey') -> list[str]:
        """Describe the identity fields where ``other`` differs from this key."""
        mine, theirs = self.identity(), other.identity()
        return [f'{name} {theirs[name]!r} (wanted {mine[name]!r})'
                for name in mine if mine[name] != theirs[name]]


class EngineCache:
    """
    A directory of ``<model-stem>-<digest[:16]>.engine`` plans, each with a ``.json`` sidecar.

    :attr:`last_reason` says why the last :meth:`load` returned None (or how it hit), and
    :attr:`last_info` holds the ``info`` stored with the plan that hit (else {}).
    """

    def __init__(self, directory: Optional[Union[str, 'os.PathLike[str]']] = None) -> None:
        self.directory = resolve_cache_dir(directory)
        self.last_reason = ''
        self.last_info: dict[str, Any] = {}

    def path_for(self, key: EngineKey) -> Path:
        """Return where the plan for ``key`` lives; its sidecar is the same path with .json."""
        return self.directory / f'{_stem(key)}-{key.digest()[:16]}.engine'

    @staticmethod
    def sidecar_for(engine_path: Path) -> Path:
        """Return the sidecar JSON path of a plan."""
        return engine_path.with_suffix('.json')

    def load(self, key: EngineKey) -> Optional[bytes]:
        """
        Return the cached plan for exactly ``key``, or None with :attr:`last_reason` set.

        Refused (None): no plan, a missing or unreadable sidecar, a sidecar of another format
        or for another key (a stale or foreign plan), and a plan whose size or sha256 differs
        from the sidecar (truncated or corrupt).
        """
        path = self.path_for(key)
        sidecar = self.sidecar_for(path)
        self.last_info = {}
        if not path.is_file():
            self.last_reason = f'no cached engine at {path}' + self._near_misses(key, path)
            return None
        try:
            meta = json.loads(sidecar.read_text(encoding='utf-8'))
            if not isinstance(meta, dict):
                raise ValueError('not a JSON object')
        except FileNotFoundError:
            self.last_reason = f'cached engine {path} has no sidecar {sidecar.name}: not trusted'
            return None
        except (OSError, ValueError) as e:
            self.last_reason = f'sidecar {sidecar} is unreadable ({e}): not trusted'
            return None
        if meta.get('format') != CACHE_FORMAT:
            self.last_reason = (f'sidecar {sidecar} has format {meta.get("format")!r}, '
                                f'expected {CACHE_FORMAT}: not trusted')
            return None
        try:
            stored = EngineKey.from_dict(meta.get('key') or {})
        except (TypeError, ValueError) as e:
            self.last_reason = f'sidecar {sidecar} holds no valid key ({e}): not trusted'
            return None
        if stored != key:
            self.last_reason = (f'cached engine {path} was built for another key: '
                                + '; '.join(key.differences(stored)))
            return None
        try:
            data = path.read_bytes()
        except OSError as e:
            self.last_reason = f'cached engine {path} cannot be read: {e}'
            return None
        size = meta.get('engine_bytes')
        if size != len(data):
            self.last_reason = (f'cached engine {path} has {len(data)} bytes, the sidecar says '
                                f'{size}: truncated or replaced, not trusted')
            return None
        if hashlib.sha256(data).hexdigest() != meta.get('engine_sha256'):
            self.last_reason = (f'cached engine {path} sha256 differs from its sidecar: '
                                'corrupt or replaced, not trusted')
            return None
        info = meta.get('info')
        self.last_info = dict(info) if isinstance(info, dict) else {}
        self.last_reason = f'cache hit {path}'
        return data

    def store(self, key: EngineKey, engine_bytes: bytes,
              info: Optional[dict[str, Any]] = None) -> Path:
        """
        Write the plan and its sidecar atomically; return the plan path.

        ``info`` (JSON-ready, e.g. the precision actually built) is kept in the sidecar and
        given back by :attr:`last_info` on a hit; it takes no part in matching.

        Each file goes to a temporary file in the same directory, is fsynced and renamed over
        the target, so readers see the old pair or the new file, never a partial one; a plan
        and sidecar from two different writers fail the sha256 check and are rebuilt.
        """
        data = bytes(engine_bytes)
        if not data:
            raise ValueError('refusing to cache an empty engine')
        path = self.path_for(key)
        # Owner-only: a plan is loaded into the process, so others must not plant one.
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        meta = {
            'format': CACHE_FORMAT,
            'key': json.loads(key.to_json()),
            'digest': key.digest(),
            'engine_bytes': len(data),
            'engine_sha256': hashlib.sha256(data).hexdigest(),
            'info': dict(info or {}),
        }
        _atomic_write(path, data)
        _atomic_write(self.sidecar_for(path),
                      (json.dumps(meta, indent=2, sort_keys=True) + '\n').encode('utf-8'))
        return path

    def remove(self, key: EngineKey) -> None:
        """Delete the plan and sidecar of ``key`` if present (e.g. TensorRT refused the plan)."""
        path = self.path_for(key)
        for target in (path, self.sidecar_for(path)):
            try:
                target.unlink()
            except FileNotFoundError:
                pass

    def _near_misses(self, key: EngineKey, path: Path) -> str:
        """Explain why engines cached for the same model file name do not fit (diagnostics)."""
        if not self.directory.is_dir():
            return ''
        reasons = []
        for sidecar in sorted(self.directory.glob(f'{_stem(key)}-*.json'))[:8]:
            if sidecar == self.sidecar_for(path):
                continue
            try:
                meta = json.loads(sidecar.read_text(encoding='utf-8'))
                other = EngineKey.from_dict(meta['key'])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            diff = key.differences(other)
            if diff:
                reasons.append(f'{sidecar.with_suffix(".engine").name} is for ' + ', '.join(diff))
        return ('; not reusable: ' + ' | '.join(reasons)) if reasons else ''


def _stem(key: EngineKey) -> str:
    """Return the model file stem of a key, reduced to characters safe in a file name."""
    return _SAFE_STEM.sub('_', Path(key.model_name).stem) or 'model'


def _atomic_write(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` via a fsynced temporary file and os.replace."""
    fd, tmp = tempfile.mkstemp(prefix=f'.{target.name}.', suffix='.tmp', dir=target.parent)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:  # remove the temporary file whatever went wrong, then re-raise
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
