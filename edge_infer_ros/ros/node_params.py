"""
Parameter glue of every stage node: the common specs, their descriptors, declaration, checks.

The specs themselves are plain (:mod:`edge_infer_ros.core.params`); this is what turns them
into declared ROS parameters with descriptors, and refuses a change the spec refuses.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional, Sequence

from edge_infer_ros.core.handoff import INPUT_MODES
from edge_infer_ros.core.params import ParamSpec, spec_map, validate_updates
from edge_infer_ros.core.validate import MAX_HARDWARE_ID
from edge_infer_ros.ros.compat import (add_post_set_parameters_callback,
                                       release_lifecycle_state_machine)
from edge_infer_ros.ros.same_host import AUTO, same_host_choices
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.lifecycle import LifecycleNode
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

#: hardware_id of a node in the root namespace (elsewhere: the namespace).
DEFAULT_HARDWARE_ID = 'edge_infer_ros'


def hardware_id_for(value: str, namespace: str) -> str:
    """Return the hardware_id in force: the parameter, else the namespace (robots differ)."""
    return value or namespace.strip('/') or DEFAULT_HARDWARE_ID


#: Parameters every stage node has.
COMMON_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec('autostart', True, 'configure and activate at start (false: wait for lifecycle '
              'transitions from a manager)', runtime=False),
    ParamSpec('input_mode', 'thread', 'how frames from this process reach the stage: inline '
              '(run in the upstream thread, ~1 us), thread (own worker, stages overlap) or '
              'auto (inline while idle and the upstream has time to spare, else the worker)',
              choices=INPUT_MODES),
    ParamSpec('queue_depth', 1, 'frames waiting at the input before the oldest is dropped '
              '(keep-latest; 1 = lowest latency)', low=1, high=1000),
    ParamSpec('qos.input.reliability', 'reliable', 'reliability of input subscriptions '
              "(image inputs default to best_effort, like camera drivers' sensor-data QoS: "
              'it accepts reliable and best-effort publishers alike)',
              choices=('best_effort', 'reliable'), runtime=False),
    ParamSpec('qos.input.durability', 'volatile', 'durability of input subscriptions',
              choices=('volatile', 'transient_local'), runtime=False),
    ParamSpec('qos.input.depth', 5, 'history depth of input subscriptions', low=1, high=1000,
              runtime=False),
    ParamSpec('qos.output.reliability', 'reliable', 'reliability of output publishers '
              '(reliable serves reliable and best-effort subscribers alike)',
              choices=('best_effort', 'reliable'), runtime=False),
    ParamSpec('qos.output.durability', 'volatile', 'durability of output publishers',
              choices=('volatile', 'transient_local'), runtime=False),
    ParamSpec('qos.output.depth', 10, 'history depth of output publishers', low=1, high=1000,
              runtime=False),
    ParamSpec('diagnostics_period_s', 1.0, "period of this node's /diagnostics status",
              low=0.05, high=60.0),
    ParamSpec('hardware_id', '', "hardware_id of the diagnostics statuses ('': the node's "
              f'namespace without its slash, {DEFAULT_HARDWARE_ID} in the root namespace; at most '
              f'{MAX_HARDWARE_ID} characters)', check=lambda v: None if len(v) <=
              MAX_HARDWARE_ID else f'hardware_id has {len(v)} characters, at most '
              f'{MAX_HARDWARE_ID}'),
    ParamSpec('startup_grace_s', 5.0, 'an input with no publisher, or an output the robot '
              'needs with no subscriber, for this long after activation is a WARN naming the '
              'topic (a mistyped topic or remapping), s', low=0.1, high=3600.0),
    ParamSpec('transport.same_host', AUTO, "how frames travel between the package's own "
              'processes on this host: iceoryx2 (shared memory, zero-copy) or dds; auto: '
              'iceoryx2 where it imports, else DDS. DDS is still published for other '
              'subscribers, and used with a WARN when the transport named is missing',
              choices=same_host_choices(), runtime=False),
)


def descriptor_for(spec: ParamSpec) -> ParameterDescriptor:
    """Build the ParameterDescriptor that `ros2 param describe` shows for a spec."""
    descriptor = ParameterDescriptor(description=spec.description)
    constraints = []
    if spec.choices:
        constraints.append('one of: ' + ', '.join(spec.choices))
    if not spec.runtime:
        constraints.append('start-only: set it while the node is not active; it applies at '
                           'the next configure')
    descriptor.additional_constraints = '; '.join(constraints)
    if isinstance(spec.default, bool) or isinstance(spec.default, (str, list, tuple)):
        return descriptor
    if isinstance(spec.default, int) and (spec.low is not None or spec.high is not None):
        descriptor.integer_range = [IntegerRange(
            from_value=int(spec.low if spec.low is not None else -2**63),
            to_value=int(spec.high if spec.high is not None else 2**63 - 1), step=1)]
    elif isinstance(spec.default, float) and (spec.low is not None or spec.high is not None):
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(spec.low if spec.low is not None else -1e308),
            to_value=float(spec.high if spec.high is not None else 1e308), step=0.0)]
    return descriptor


def qos_from(reliability: str, durability: str, depth: int) -> QoSProfile:
    """Build a QoS profile from parameter values."""
    return QoSProfile(
        depth=depth,
        reliability=(ReliabilityPolicy.RELIABLE if reliability == 'reliable'
                     else ReliabilityPolicy.BEST_EFFORT),
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if durability == 'transient_local'
                    else DurabilityPolicy.VOLATILE))


class DeclaredParameters(LifecycleNode):
    """What a stage node does with its ParamSpecs (the base of StageNode)."""

    #: Parameters of the stage itself (COMMON_PARAMS are added).
    PARAMS: tuple[ParamSpec, ...] = ()
    #: Default of input_mode for this stage (overridable by parameter).
    DEFAULT_INPUT_MODE = 'thread'
    #: Default input reliability: best_effort for image inputs (sensor-data QoS of camera
    #: drivers), reliable between the package's own stages.
    DEFAULT_INPUT_RELIABILITY = 'reliable'
    _active = False  # StageNode's: start-only parameters are refused while active
    _configured = False  # StageNode's: a start-only change waits for the next configure

    def destroy_node(self) -> None:
        """Destroy the node, and the lifecycle state machine rclpy leaves holding it."""
        super().destroy_node()
        release_lifecycle_state_machine(self)

    @classmethod
    def declared_specs(cls) -> dict[str, ParamSpec]:
        """Return the parameters this class declares: COMMON_PARAMS (with its defaults), PARAMS."""
        defaults = {'input_mode': cls.DEFAULT_INPUT_MODE,
                    'qos.input.reliability': cls.DEFAULT_INPUT_RELIABILITY}
        common = tuple(replace(s, default=defaults[s.name]) if s.name in defaults else s
                       for s in COMMON_PARAMS)
        # The transports registered now: one added to SAME_HOST is a choice at once.
        common = tuple(replace(s, choices=same_host_choices()) if s.name == 'transport.same_host'
                       else s for s in common)
        return spec_map(common + cls.PARAMS)

    def _declare_parameters(self) -> None:
        """Declare every spec with its descriptor; raise on a value the spec refuses."""
        self.param_specs = {**self.declared_specs(), **spec_map(self.instance_specs())}
        for spec in self.param_specs.values():
            default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
            if isinstance(default, list) and not default:
                # rclpy cannot infer the type of an empty list: declare the type, then set it.
                kind = Parameter.Type.STRING_ARRAY if spec.list_of is str \
                    else Parameter.Type.DOUBLE_ARRAY
                self.declare_parameter(spec.name, kind, descriptor_for(spec))
                if self.get_parameter_or(spec.name).type_ == Parameter.Type.NOT_SET:
                    self.set_parameters([Parameter(spec.name, kind, [])])
                continue
            self.declare_parameter(spec.name, default, descriptor_for(spec))
        self.p: dict[str, Any] = {name: self._param_value(name) for name in self.param_specs}
        reason = validate_updates(self.param_specs, self.p, active=False)
        if reason:
            raise ValueError(f'{self.get_fully_qualified_name()}: bad parameter: {reason}')
        self.add_on_set_parameters_callback(self._check_parameters)
        add_post_set_parameters_callback(self, self._parameters_set)

    def instance_specs(self) -> tuple[ParamSpec, ...]:
        """Parameters whose names this node's own files choose (none unless overridden)."""
        return ()

    def _param_value(self, name: str) -> Any:
        value = self.get_parameter(name).value
        return list(value) if isinstance(value, (list, tuple)) or hasattr(value, 'tolist') \
            else value

    def _check_parameters(self, parameters: Sequence[Parameter]) -> SetParametersResult:
        updates = {p.name: (list(p.value) if hasattr(p.value, '__iter__') and
                            not isinstance(p.value, str) else p.value) for p in parameters}
        reason = validate_updates(self.param_specs, updates, active=self._active)
        if reason is None:
            reason = self.check_parameters(updates)
        if reason:
            self.get_logger().warning(f'parameter change refused: {reason}')
            return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _parameters_set(self, parameters: Sequence[Parameter]) -> None:
        changed = {}
        for parameter in parameters:
            if parameter.name in self.param_specs:
                self.p[parameter.name] = self._param_value(parameter.name)
                changed[parameter.name] = self.p[parameter.name]
        pending = [n for n in changed if not self.param_specs[n].runtime]
        if pending and self._configured:
            self.get_logger().info(
                f'{", ".join(pending)} set; start-only, so it applies at the next configure '
                '(ros2 lifecycle set <node> cleanup, then configure)')
        if changed:
            self.settings_changed(changed)
            self.parameters_changed(changed)

    def settings_changed(self, changed: dict[str, Any]) -> None:
        """Apply changes of the settings every node of this kind shares (StageNode's)."""

    def check_parameters(self, updates: dict[str, Any]) -> Optional[str]:
        """Stage-specific validation of a batch of changes (cross-parameter rules)."""
        return None

    def parameters_changed(self, changed: dict[str, Any]) -> None:
        """Apply accepted changes; they take effect on the next frame."""

    def unknown_parameters(self) -> list[str]:
        """Names given to the node (a parameter file, -p) that it does not have: typos."""
        overrides = getattr(self, '_parameter_overrides', {}) or {}
        return sorted(name for name in overrides
                      if not self.has_parameter(name) and not name.startswith('qos_overrides.'))
