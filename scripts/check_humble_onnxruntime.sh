#!/usr/bin/env bash
# Check the README's way of adding onnxruntime on Humble (Ubuntu 22.04) without breaking apt's
# numpy, on a Python 3.10 that stands in for Ubuntu 22.04's: a folder holding numpy 1.21.5 and
# OpenCV 4.5.4 (Jammy's python3-numpy and python3-opencv versions, OpenCV built against numpy
# 1.x as apt's is) is put on sys.path *after* the environment's own site-packages, the order
# Ubuntu gives ~/.local and /usr/local before /usr/lib/python3/dist-packages. Then:
#   plain:  pip install onnxruntime onnx         (what rosdep's pip keys do)
#   pinned: pip install numpy==1.21.6 onnxruntime==1.19.2 onnx==1.16.2   (the README's way)
# and reports the numpy each ends with and whether OpenCV still imports and the model runs.
# Not part of CI (it needs python3.10 and ~2 minutes of downloads): run it by hand.
#   usage: scripts/check_humble_onnxruntime.sh [python3.10] [workdir]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-python3.10}"
WORK="${2:-$(mktemp -d)}"
PIP=(-m pip install -q --disable-pip-version-check --only-binary=:all:)
echo "[check] $("$PY" --version) in $WORK" >&2
"$PY" "${PIP[@]}" --target "$WORK/apt" numpy==1.21.5 opencv-python-headless==4.5.4.60
probe() {  # probe VENV: what numpy, does cv2 import, does onnxruntime run the shipped model
  "$1/bin/python" - "$ROOT/models/detector.onnx" <<'PY'
import sys
import numpy
print(f'  numpy {numpy.__version__} from {numpy.__file__}')
try:
    import cv2
    print(f'  cv2 {cv2.__version__}: imports')
except Exception as error:  # what a numpy-1.x build does under numpy 2
    print(f'  cv2 BROKEN: {type(error).__name__}: {str(error).splitlines()[0]}')
import onnx
import onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])
shape = [d if isinstance(d, int) else 1 for d in session.get_inputs()[0].shape]
out = session.run(None, {session.get_inputs()[0].name: numpy.zeros(shape, numpy.float32)})
print(f'  onnxruntime {ort.__version__}, onnx {onnx.__version__}: model ran, '
      f'output {list(out[0].shape)}')
PY
}
for case in plain pinned; do
  venv="$WORK/$case"
  "$PY" -m venv "$venv"
  site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$WORK/apt" > "$site/zz_apt_dist_packages.pth"   # after site-packages, like dist-packages
  if [ "$case" = plain ]; then
    "$venv/bin/python" "${PIP[@]}" onnxruntime onnx
  else
    "$venv/bin/python" "${PIP[@]}" numpy==1.21.6 onnxruntime==1.19.2 onnx==1.16.2
  fi
  echo "[check] $case:" >&2
  probe "$venv" || echo "  (probe failed)"
done
