"""The TensorRT engine cache: exact keys, refused stale/foreign/truncated plans, atomic writes."""

from dataclasses import replace
import json
import os
from pathlib import Path

from edge_infer_ros.inference.backends import engine_cache
from edge_infer_ros.inference.backends.engine_cache import (
    default_cache_dir, EngineCache, EngineKey, resolve_cache_dir)
import pytest

PLAN = b'\x00serialized-engine\xff' * 64


def make_key(**changes: object) -> EngineKey:
    key = EngineKey(model_sha256='ab' * 32, tensorrt_version='10.3.0.26',
                    gpu_name='Orin (nvgpu)', compute_capability='8.7', precision='fp16',
                    input_shape=(1, 3, 320, 320), workspace_mb=1024,
                    model_name='/opt/models/yolov8n.onnx')
    return replace(key, **changes)


#: One change per identity field: each must give another digest and a refused load.
CHANGES = {
    'model_sha256': {'model_sha256': 'cd' * 32},
    'tensorrt_version': {'tensorrt_version': '10.4.0.26'},
    'gpu_name': {'gpu_name': 'NVIDIA GeForce RTX 3060'},
    'compute_capability': {'compute_capability': '8.6'},
    'precision': {'precision': 'fp32'},
    'input_shape': {'input_shape': (1, 3, 640, 640)},
    'workspace_mb': {'workspace_mb': 2048},
}


def test_digest_is_stable_hex() -> None:
    key = make_key()
    assert key.digest() == make_key().digest()
    assert len(key.digest()) == 64 and set(key.digest()) <= set('0123456789abcdef')
    # Pinned: the digest must not change between runs or Python versions, else every cached
    # engine would be rebuilt after an upgrade.
    assert key.digest() == EngineKey.from_json(key.to_json()).digest()
    assert key.digest() == 'dd3956a0b0db3a78ed9a53af92e4a27fc661c4cedd3bcba6e673bcf04e1311a1'


def test_digest_ignores_the_order_of_fields_and_the_label() -> None:
    key = make_key()
    shuffled = EngineKey.from_json(json.dumps(dict(reversed(json.loads(key.to_json()).items()))))
    assert shuffled.digest() == key.digest()
    assert 'model_name' not in key.identity()


@pytest.mark.parametrize('field', sorted(CHANGES))
def test_digest_is_sensitive_to_every_field(field: str) -> None:
    assert make_key(**CHANGES[field]).digest() != make_key().digest()
    assert make_key(**CHANGES[field]) != make_key()


def test_model_name_is_only_a_label() -> None:
    renamed = make_key(model_name='/elsewhere/renamed.onnx')
    assert renamed == make_key()
    assert renamed.digest() == make_key().digest()


def test_json_round_trip_normalises_types() -> None:
    key = make_key()
    back = EngineKey.from_json(key.to_json())
    assert back == key and back.model_name == key.model_name
    assert isinstance(back.input_shape, tuple)
    assert EngineKey.from_json(json.dumps({**json.loads(key.to_json()),
                                           'input_shape': [1, 3, 320, 320]})) == key


def test_bad_precision_is_refused() -> None:
    with pytest.raises(ValueError, match='precision'):
        make_key(precision='fp8')


def test_path_for_uses_stem_and_digest(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    key = make_key()
    path = cache.path_for(key)
    assert path == tmp_path / f'yolov8n-{key.digest()[:16]}.engine'
    assert cache.sidecar_for(path) == tmp_path / f'yolov8n-{key.digest()[:16]}.json'
    odd = make_key(model_name='/x/my model [v2].onnx')
    assert cache.path_for(odd).parent == tmp_path
    assert ' ' not in cache.path_for(odd).name and '[' not in cache.path_for(odd).name


def test_round_trip(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path / 'nested' / 'engines')
    key = make_key()
    assert cache.load(key) is None
    assert 'no cached engine' in cache.last_reason
    path = cache.store(key, PLAN, info={'precision': 'fp16', 'notes': ['built']})
    assert path.is_file() and cache.sidecar_for(path).is_file()
    assert cache.load(key) == PLAN
    assert cache.last_reason.startswith('cache hit')
    assert cache.last_info == {'precision': 'fp16', 'notes': ['built']}
    sidecar = json.loads(cache.sidecar_for(path).read_text())
    assert EngineKey.from_dict(sidecar['key']) == key
    assert sidecar['key']['model_name'] == key.model_name
    # The same weights under another file name hit too (their own file name, same digest).
    assert EngineCache(tmp_path / 'nested' / 'engines').load(
        make_key(model_name='/other/yolov8n.onnx')) == PLAN


@pytest.mark.parametrize('field', ['model_sha256', 'precision', 'tensorrt_version', 'gpu_name',
                                   'compute_capability', 'input_shape', 'workspace_mb'])
def test_other_key_is_not_loaded_with_a_reason(tmp_path: Path, field: str) -> None:
    cache = EngineCache(tmp_path)
    cache.store(make_key(), PLAN)
    other = make_key(**CHANGES[field])
    assert cache.load(other) is None
    # The reason names the cached engine of the same model and the field that differs.
    assert field in cache.last_reason, cache.last_reason
    assert 'not reusable' in cache.last_reason


@pytest.mark.parametrize('field', sorted(CHANGES))
def test_foreign_plan_at_the_keys_path_is_refused(tmp_path: Path, field: str) -> None:
    # A plan planted (or left by a digest collision) at the path of another key: the sidecar
    # key decides, never the file name.
    cache = EngineCache(tmp_path)
    theirs = make_key(**CHANGES[field])
    source = cache.store(theirs, PLAN)
    target = cache.path_for(make_key())
    os.replace(source, target)
    os.replace(cache.sidecar_for(source), cache.sidecar_for(target))
    assert cache.load(make_key()) is None
    assert 'built for another key' in cache.last_reason
    assert field in cache.last_reason


def test_truncated_plan_is_refused(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    path = cache.store(make_key(), PLAN)
    path.write_bytes(PLAN[:len(PLAN) // 2])
    assert cache.load(make_key()) is None
    assert 'truncated' in cache.last_reason


def test_same_size_corrupt_plan_is_refused(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    path = cache.store(make_key(), PLAN)
    path.write_bytes(b'X' + PLAN[1:])
    assert cache.load(make_key()) is None
    assert 'sha256' in cache.last_reason


@pytest.mark.parametrize('sidecar_text, reason', [
    (None, 'no sidecar'),
    ('{not json', 'unreadable'),
    ('[1, 2]', 'unreadable'),
    ('{"format": 99}', 'format'),
    ('{"format": 1, "key": {"model_sha256": "ab"}}', 'no valid key'),
])
def test_bad_sidecar_is_refused(tmp_path: Path, sidecar_text: object, reason: str) -> None:
    cache = EngineCache(tmp_path)
    path = cache.store(make_key(), PLAN)
    sidecar = cache.sidecar_for(path)
    if sidecar_text is None:
        sidecar.unlink()
    else:
        sidecar.write_text(str(sidecar_text))
    assert cache.load(make_key()) is None
    assert reason in cache.last_reason


def test_store_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = EngineCache(tmp_path)
    key = make_key()
    path = cache.store(key, PLAN)
    # A writer that dies before the rename leaves the old pair intact and no temporary file.
    calls = []

    def failing_replace(src: str, dst: str) -> None:
        calls.append((src, dst))
        raise OSError('disk full')

    monkeypatch.setattr(engine_cache.os, 'replace', failing_replace)
    with pytest.raises(OSError, match='disk full'):
        cache.store(key, b'new plan that never lands')
    monkeypatch.undo()
    assert calls and Path(calls[0][0]).parent == tmp_path  # tmp file beside the target
    assert cache.load(key) == PLAN
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [path.name, cache.sidecar_for(path).name])


def test_half_replaced_pair_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A crash between the plan's and the sidecar's rename: new plan, old sidecar -> refused.
    cache = EngineCache(tmp_path)
    key = make_key()
    cache.store(key, PLAN)
    real_replace = os.replace

    def only_first(src: str, dst: str) -> None:
        if str(dst).endswith('.json'):
            raise OSError('crash')
        real_replace(src, dst)

    monkeypatch.setattr(engine_cache.os, 'replace', only_first)
    with pytest.raises(OSError):
        cache.store(key, PLAN + b'more')
    monkeypatch.undo()
    assert cache.load(key) is None
    assert 'not trusted' in cache.last_reason


def test_store_refuses_empty_plan(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        EngineCache(tmp_path).store(make_key(), b'')


def test_remove(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    cache.store(make_key(), PLAN)
    cache.remove(make_key())
    cache.remove(make_key())  # twice is fine
    assert list(tmp_path.iterdir()) == []


def test_default_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    assert default_cache_dir() == tmp_path / 'edge_infer_ros' / 'engines'
    assert EngineCache().directory == tmp_path / 'edge_infer_ros' / 'engines'
    assert EngineCache('').directory == tmp_path / 'edge_infer_ros' / 'engines'
    monkeypatch.setenv('XDG_CACHE_HOME', 'relative/dir')  # invalid per the XDG spec
    assert default_cache_dir() == Path.home() / '.cache' / 'edge_infer_ros' / 'engines'
    monkeypatch.delenv('XDG_CACHE_HOME')
    assert default_cache_dir() == Path.home() / '.cache' / 'edge_infer_ros' / 'engines'
    assert resolve_cache_dir(str(tmp_path / 'x')) == tmp_path / 'x'
    assert resolve_cache_dir('~/engines') == Path.home() / 'engines'
