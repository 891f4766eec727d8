"""The split run's own options: derived from the caller's, which stay as given."""

from __future__ import annotations

from edge_infer_ros.runs.options import component_specs, RunOptions
from edge_infer_ros.runs.split import split_run_options


def test_the_split_run_holds_its_camera_and_leaves_the_callers_options_alone() -> None:
    camera = {'pace_to_pipeline': True}
    options = RunOptions(mode='split', frames=7, extra={'camera': camera, 'nms': {'x': 1}})
    derived = split_run_options(options)
    assert derived.extra['camera'] == {'pace_to_pipeline': True, 'autostart': False}
    assert derived.frames == 7 and derived.mode == 'split'
    # The caller's options, down to the dicts inside them, are unchanged.
    assert options.extra == {'camera': {'pace_to_pipeline': True}, 'nms': {'x': 1}}
    assert camera == {'pace_to_pipeline': True}
    # So the same options still start a camera on its own in a composed run.
    specs = {spec.name: spec for spec in component_specs(options)}
    assert specs['camera'].parameters.get('autostart', True) is True
    held = {spec.name: spec for spec in component_specs(derived, {'camera'})}
    assert held['camera'].parameters['autostart'] is False


def test_options_without_extra_get_only_the_held_camera() -> None:
    options = RunOptions(mode='split')
    assert split_run_options(options).extra == {'camera': {'autostart': False}}
    assert options.extra == {}
