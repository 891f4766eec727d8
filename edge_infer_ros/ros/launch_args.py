"""
The launch arguments a user tunes at start, and the node parameters each one sets.

Why one module: both pipeline launch files declare the same arguments and must pass them the
same way. An argument left empty sets nothing, so the parameter files decide: a default here
would silently override a user's own file (as the runner's ``--fps 30`` once did). Values are
read as YAML (``class_names:="[ball, person]"``, ``debug_image:=true``) and checked against
the parameter's type, so a typo stops the launch with the argument's name instead of
reaching a node as the wrong type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import yaml

#: Node names of the pipeline (edge_infer_ros.ros.graph.PIPELINE).
ALL_NODES = ('camera', 'preprocess', 'detector', 'nms', 'action', 'budget_monitor')


@dataclass(frozen=True)
class Tunable:
    """One launch argument: what it means and the (node, parameter) pairs it sets."""

    name: str
    kind: type
    description: str
    targets: tuple[tuple[str, str], ...]


TUNABLES: tuple[Tunable, ...] = (
    Tunable('fps', float, 'camera frames per second (also the rate the detector is judged '
            'against at configure)', (('camera', 'fps'), ('detector', 'expected_fps'))),
    Tunable('frame_id', str, "header.frame_id of the camera's frames (the camera's name)",
            (('camera', 'frame_id'),)),
    Tunable('class_names', list, "the model's class names in class-id order, e.g. "
            '"[ball, person]" (default: from the model metadata)',
            (('detector', 'class_names'),)),
    Tunable('score_threshold', float, 'minimum detection score (detector and NMS)',
            (('detector', 'score_threshold'), ('nms', 'score_threshold'))),
    Tunable('iou_threshold', float, 'NMS overlap above which the weaker box goes',
            (('nms', 'iou_threshold'),)),
    Tunable('deadline_ms', float, 'end-to-end deadline, ms: the budget monitor and the '
            "action stage's lateness check", (('budget_monitor', 'deadline_ms'),
                                              ('action', 'deadline_ms'))),
    Tunable('late_frame_policy', str, 'what a late frame commands: stop, hold or publish',
            (('action', 'late_frame_policy'),)),
    Tunable('command_type', str, 'cmd_vel message type: twist_stamped or twist',
            (('action', 'command_type'),)),
    Tunable('command_frame_id', str, 'header.frame_id of the commands (default base_link)',
            (('action', 'command_frame_id'),)),
    Tunable('drive_camera', str, 'the camera (frame_id) whose frames steer the robot',
            (('action', 'drive_camera'),)),
    Tunable('debug_image', bool, 'publish debug_image while someone subscribes',
            (('action', 'debug_image'),)),
    Tunable('use_sim_time', bool, 'every node on /clock (simulation, bag replay)',
            tuple((node, 'use_sim_time') for node in ALL_NODES)),
)

#: Arguments that change the launch's shape rather than a parameter (declared by each file).
SHAPE_ARGUMENTS = {
    'image_topics': 'the robot\'s image topics, e.g. "[/front/image_raw, /rear/image_raw]": '
                    'preprocess reads them directly and no camera node starts',
    'action': 'true: start the action stage (false: detections only, no cmd_vel)',
    'cmd_vel_topic': 'the topic the action stage publishes commands on (default cmd_vel)',
    'params_file': 'a parameter file applied after the shipped ones, to every node',
}


def parse(name: str, kind: type, text: str) -> Any:
    """Return a launch argument's value as its parameter's type, or raise naming it."""
    try:
        value = yaml.safe_load(text) if kind is not str else text
    except yaml.YAMLError as error:
        raise ValueError(f'launch argument {name}:={text!r} is not valid YAML: '
                         f'{getattr(error, "problem", error)}') from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is list and isinstance(value, list):
        value = [str(item) for item in value]
    if not isinstance(value, kind) or (kind is float and isinstance(value, bool)):
        raise ValueError(f'launch argument {name}:={text!r} must be a {kind.__name__}')
    return value


def node_overrides(given: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Return, per node name, the parameters the non-empty arguments in ``given`` set."""
    result: dict[str, dict[str, Any]] = {}
    for tunable in TUNABLES:
        text = given.get(tunable.name, '')
        if text == '':
            continue
        value = parse(tunable.name, tunable.kind, text)
        for node, parameter in tunable.targets:
            result.setdefault(node, {})[parameter] = value
    return result


def image_topics(given: Mapping[str, str]) -> list[str]:
    """Return the image_topics argument as a list ([] when not given)."""
    text = given.get('image_topics', '')
    return parse('image_topics', list, text) if text else []


def declare() -> list[Any]:
    """Return the DeclareLaunchArgument actions of every tunable and shape argument."""
    from launch.actions import DeclareLaunchArgument
    actions = [DeclareLaunchArgument(t.name, default_value='',
                                     description=f"{t.description} ('': the parameter files')")
               for t in TUNABLES]
    defaults = {'action': 'true', 'cmd_vel_topic': 'cmd_vel'}
    for name, description in SHAPE_ARGUMENTS.items():
        choices = ['true', 'false'] if name == 'action' else None
        actions.append(DeclareLaunchArgument(name, default_value=defaults.get(name, ''),
                                             description=description, choices=choices))
    return actions


@dataclass(frozen=True)
class StagePlan:
    """One node a pipeline launch starts: its name and what the arguments set on it."""

    name: str
    parameters: dict[str, Any]
    remappings: tuple[tuple[str, str], ...] = ()


def pipeline_plan(given: Mapping[str, str]) -> list[StagePlan]:
    """
    Return the nodes both pipeline launch files start, in data-flow order.

    Named as in edge_infer_ros.ros.graph.PIPELINE; the arguments that set a parameter come
    last in each node's parameters, so they win over the fixed ones.
    """
    overrides = node_overrides(given)
    topics = image_topics(given)
    budget = given['budget']
    plans: list[tuple[str, dict[str, Any], tuple[tuple[str, str], ...]]] = []
    if not topics:
        plans.append(('camera', {'source': given['source'], 'uri': given['uri'],
                                 'qos.input.reliability': given['image_qos']},
                      (('image_in', given['image_topic']),)))
    preprocess: dict[str, Any] = {'model_path': given['model'],
                                  'input_transport': given['image_transport']}
    if topics:  # the robot's topics straight to preprocess: no camera node
        preprocess.update({'image_topics': topics, 'qos.input.reliability': given['image_qos']})
    # image_transport:=compressed: the driver's JPEG/PNG frames straight to preprocess
    plans.append(('preprocess', preprocess,
                  (('image_raw/compressed', given['image_topic'] + '/compressed'),)))
    plans.append(('detector', {'model_path': given['model'], 'backend': given['backend'],
                               'budget_file': budget}, ()))
    plans.append(('nms', {}, ()))
    if given['action'] == 'true':
        plans.append(('action', {'budget_file': budget},
                      (('cmd_vel', given['cmd_vel_topic']),)))
    if given['monitor'] == 'true':
        plans.append(('budget_monitor', {}, ()))
    return [StagePlan(name, {**parameters, **overrides.get(name, {})}, remaps)
            for name, parameters, remaps in plans]
