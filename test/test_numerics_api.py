"""
No numpy newer than 1.21 or OpenCV newer than 4.5 in the package, its tests, bench and scripts.

Ubuntu 22.04 (Humble) ships numpy 1.21 and OpenCV 4.5.4; neither installs on Python 3.11, so
scripts/test.sh runs the ROS-free tests on numpy 1.23.5 and OpenCV 4.5.5, the oldest that do.
That run catches what numpy 1.24+ and OpenCV 4.6+ added, where the tests execute it. This check
covers the rest by reading the code: what numpy 1.22 and 1.23 added (``method=`` of the
percentile functions, ``keepdims=`` of argmax/argmin), names numpy 1.25 and 2.x added, and
``cv2.dnn.NMSBoxesBatched`` (OpenCV 4.7) in a module that does not check for it by name.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ('edge_infer_ros', 'test', 'bench', 'scripts', 'launch', 'models')
#: keyword -> the numpy functions that gained it after 1.21.
NEWER_KEYWORDS = {
    'method': {'percentile', 'quantile', 'nanpercentile', 'nanquantile'},  # numpy 1.22
    'keepdims': {'argmax', 'argmin'},  # numpy 1.22
    'equal_nan': {'unique'},  # numpy 1.24
    'copy': {'asarray'},  # numpy 2.0
}
#: ``np.<name>`` that numpy added after 1.21.
NEWER_NUMPY_NAMES = {
    'array_api', 'exceptions', 'dtypes', 'concat', 'permute_dims', 'matrix_transpose', 'vecdot',
    'astype', 'isdtype', 'unique_all', 'unique_counts', 'unique_inverse', 'unique_values',
    'cumulative_sum', 'cumulative_prod', 'trapezoid', 'bitwise_left_shift',
    'bitwise_right_shift', 'bitwise_invert', 'acos', 'asin', 'atan', 'atan2', 'acosh', 'asinh',
    'atanh', 'pow', 'long', 'ulong', 'strings', 'matvec', 'vecmat',
}
#: OpenCV functions newer than 4.5, allowed only in a module that checks for them by name.
NEWER_OPENCV = {'NMSBoxesBatched'}


def _files() -> list[Path]:
    return [p for d in CODE_DIRS for p in sorted((ROOT / d).rglob('*.py'))
            if p != Path(__file__).resolve()]


def _problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    problems = []
    # A module that looks the function up by name (hasattr(cv2.dnn, 'NMSBoxesBatched'), in a
    # function or once at import) has a fallback; the oldest-numerics step runs it.
    checked = {c for c in NEWER_OPENCV if any(
        isinstance(n, ast.Constant) and n.value == c for n in ast.walk(tree))}
    for node in ast.walk(tree):
        where = f'{path.relative_to(ROOT)}:{getattr(node, "lineno", 0)}'
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            for keyword in node.keywords:
                if node.func.attr in NEWER_KEYWORDS.get(keyword.arg or '', ()):
                    problems.append(f'{where}: {node.func.attr}({keyword.arg}=) is newer than '
                                    'numpy 1.21')
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id in ('np', 'numpy') and node.attr in NEWER_NUMPY_NAMES:
            problems.append(f'{where}: numpy.{node.attr} is newer than numpy 1.21')
        if isinstance(node, ast.Attribute) and node.attr in NEWER_OPENCV and \
                node.attr not in checked:
            problems.append(f'{where}: cv2 {node.attr} is newer than OpenCV 4.5 (check for it '
                            'with hasattr and fall back)')
    return problems


def test_no_numpy_or_opencv_api_newer_than_the_oldest_supported() -> None:
    problems = [p for path in _files() for p in _problems(path)]
    assert not problems, '\n'.join(problems)


def test_the_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    sample = tmp_path / 'sample.py'
    sample.write_text(
        'import cv2\nimport numpy as np\n'
        "p = np.percentile([1.0], 50, method='linear')\n"
        'i = np.argmax(np.zeros(3), keepdims=True)\n'
        'c = np.concat([np.zeros(1)])\n'
        'k = cv2.dnn.NMSBoxesBatched([], [], [], 0.5, 0.5)\n')
    guarded = tmp_path / 'guarded.py'
    guarded.write_text(
        'import cv2\n'
        "BATCHED = hasattr(cv2.dnn, 'NMSBoxesBatched')\n"
        'def nms():\n'
        '    return cv2.dnn.NMSBoxesBatched([], [], [], 0.5, 0.5) if BATCHED else []\n')
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = _problems(sample)
        assert not _problems(guarded)
    finally:
        ROOT = saved
    assert [f.split(':')[1] for f in found] == ['3', '4', '5', '6'], found
