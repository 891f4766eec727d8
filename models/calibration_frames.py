"""
Write the synthetic calibration set the shipped INT8 model was calibrated on.

Sequences 3000..3015 (640x480, every 16th of the first 160 frames): none is a training,
validation (900) or evaluation (1000) seed, so calibration never sees the frames it is scored
on. Also writes ``labels.json`` (quantize_model --labels) beside the frames folder.

    python models/calibration_frames.py /tmp/calib/frames
"""

import json
import os
from pathlib import Path
import sys

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edge_infer_ros.stages.synthetic import SyntheticScene  # noqa: E402, I100

SEEDS = range(3000, 3016)


def main() -> int:
    """Render the frames and their labels."""
    out = Path(sys.argv[1] if len(sys.argv) > 1 else 'calibration/frames')
    os.makedirs(out, exist_ok=True)
    labels = {}
    for seed in SEEDS:
        scene = SyntheticScene(width=640, height=480, seed=seed)
        for idx, img, gt in scene.frames(0, 160, 16):
            name = f'f{seed}_{idx:04d}.png'
            cv2.imwrite(str(out / name), img)
            labels[name] = [[*map(float, b), int(c)] for b, c in zip(gt.boxes, gt.class_ids)]
    (out.parent / 'labels.json').write_text(json.dumps(labels), encoding='utf-8')
    print(f'{len(labels)} frames in {out}, labels in {out.parent / "labels.json"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
