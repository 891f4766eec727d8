"""
The shipped model's accuracy measured through the running pipeline, not only the bare model.

Frames of a held-out synthetic sequence (a seed never used in training or model selection) go
camera -> preprocess -> detector -> nms on a real executor; the detections are compared with
the scene's ground truth, re-rendered for the same frame numbers.
"""

from __future__ import annotations

from pathlib import Path

from edge_infer_ros.core.handoff import StageInput
from edge_infer_ros.core.resources import default_model_path
from edge_infer_ros.inference.evaluation import evaluate_detections
from edge_infer_ros.stages.synthetic import CLASS_NAMES, SyntheticScene
import pytest
from support.waiting import wait_for

HELD_OUT_SEED = 1234
FRAMES = 120


@pytest.mark.slow
@pytest.mark.parametrize('width, height', [(640, 480)])
def test_shipped_model_map50_through_the_pipeline(composed, width: int, height: int) -> None:
    model = default_model_path()
    assert Path(model).is_file(), f'the shipped model {model} is missing'
    # Lossless: a deep detector queue, so every frame is evaluated.
    container, nodes = composed(frames=FRAMES, fps=30.0, model_path=model, start=False,
                                overrides={'camera': {'seed': HELD_OUT_SEED, 'width': width,
                                                      'height': height},
                                           'detector': {'queue_depth': FRAMES}})
    results = {}
    collector = StageInput('/detections', lambda e, r: results.__setitem__(e.seq, e.payload),
                           mode='inline', name='evaluation')
    collector.start()
    nodes['nms'].bus.attach('/detections', collector, has_ros_subscription=False)
    assert not container.start()
    assert nodes['camera'].wait_until_done(120.0)
    assert wait_for(lambda: len(results) == FRAMES, 60.0), len(results)
    scene = SyntheticScene(width=width, height=height, seed=HELD_OUT_SEED)
    predictions, truths = [], []
    for seq in range(FRAMES):
        detections = results[seq]
        predictions.append((detections.boxes, detections.scores, detections.class_ids))
        truths.append(scene.render(seq)[1])
    result = evaluate_detections(predictions, truths, num_classes=len(CLASS_NAMES))
    recalls = {CLASS_NAMES[c]: round(r, 3) for c, r in result.recall_per_class.items()}
    print(f'{width}x{height}: mAP@0.5 {result.map50:.3f}, recall per class {recalls}')
    assert result.map50 >= 0.8, (result.map50, recalls)
    nodes['nms'].bus.detach('/detections', collector, has_ros_subscription=False)
