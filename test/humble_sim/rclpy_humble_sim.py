"""
A simulation of Humble's rclpy surface on a newer rclpy (Jazzy or Kilted wheels).

No Humble wheels exist for these machines, so the package's Humble support is checked by taking
away, in a running Kilted/Jazzy rclpy, what Humble does not have, as recorded from ros2/rclpy's
``humble`` branch in ``rclpy_humble_surface.json``:

- modules added after Humble (``rclpy.event_handler``, ``rclpy.parameter_client``,
  ``rclpy.parameter_event_handler``, ``rclpy.type_description_service``, ...) cannot be
  imported; ``rclpy.qos_event`` is there, with Humble's names and without the newer rclpy's
  deprecation warning;
- public methods that ``Node``, ``LifecycleNode``, ``Subscription``, ``Client``,
  ``Service``, ``Executor`` and ``Future`` gained after Humble are removed
  (``add_post_set_parameters_callback``, ``list_parameters``, ``wait_for_node``,
  ``get_publisher_count``, ...), and the newer keyword arguments of ``create_timer``,
  ``create_subscription``, ``Client.call`` and the QoS event callback classes (``matched``)
  raise ``TypeError`` as Humble would;
- rclpy's own parameter service lists parameters as Humble's does (it called the removed
  ``Node.list_parameters``).

What it is not: Humble's C layers, its middleware, its executor's timing, Python 3.10 or its
behaviour changes inside methods that kept their names. Those are outside what the package can
see through names; names are where the package broke (``rclpy.event_handler``,
``add_post_set_parameters_callback``). Names a newer rclpy has that cannot be removed at run
time (enum members such as ``BEST_AVAILABLE``, module-level functions used inside rclpy) are
checked statically by ``test_humble_surface.py``.

Enabled by ``EIR_HUMBLE_SIM=1`` through ``sitecustomize.py`` beside this file (put this folder
first on ``PYTHONPATH``), so child processes (split-mode stages, launched nodes) are simulated
too; ``scripts/test.sh`` does that for its Humble step.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.machinery
import inspect
import pkgutil
import sys
import types
from typing import Any, Callable, Optional, Sequence

import rclpy_surface

#: Members that exist only on the newer rclpy but that its own code calls on these classes, or
#: that override a method Humble has on the base class: removing them would break rclpy itself,
#: not simulate Humble. The static check still forbids the package to use them.
KEEP = {
    ('rclpy.context', 'Context', 'track_node'),      # the newer Node.__init__ calls them
    ('rclpy.context', 'Context', 'untrack_node'),
    ('rclpy.subscription', 'Subscription', 'callback'),  # a property the executor uses
    ('rclpy.executors', 'MultiThreadedExecutor', 'shutdown'),  # Executor.shutdown in Humble
    ('rclpy.task', 'Task', 'cancel'),                # Future.cancel in Humble
    ('rclpy.node', 'Node', 'ParameterInput'),        # a type alias
    # get_publishers_info_by_topic (Humble has it) builds these with the newer field
    ('rclpy.topic_endpoint_info', 'TopicEndpointInfo', 'topic_type_hash'),
}

#: Methods whose keyword arguments added after Humble are refused at run time. Others (such as
#: ``Node.__init__``, which the newer ``rclpy.create_node`` calls with its new keywords, or
#: ``Timer.__init__``, which the newer ``create_timer`` calls) are checked statically only.
KEYWORDS_REFUSED_IN = {
    ('rclpy.node', 'Node', 'create_timer'),
    ('rclpy.node', 'Node', 'create_subscription'),
    ('rclpy.client', 'Client', 'call'),
}

#: Modules whose absence is simulated, filled by apply().
HIDDEN_MODULES: set[str] = set()
#: (module, class, member) removed by apply().
REMOVED_MEMBERS: list[tuple[str, str, str]] = []
#: (module, class, method, keyword) refused by apply().
REFUSED_KEYWORDS: list[tuple[str, str, str, str]] = []

_applied = False


class _HideModules(importlib.abc.MetaPathFinder):
    """Refuse to import the modules Humble does not have."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]],
                  target: Optional[types.ModuleType] = None) -> None:
        if fullname in HIDDEN_MODULES:
            raise ModuleNotFoundError(
                f"No module named '{fullname}' (simulated Humble rclpy)", name=fullname)
        return None


def _installed_modules() -> list[str]:
    import rclpy
    names = ['rclpy']
    for info in pkgutil.walk_packages(rclpy.__path__, 'rclpy.'):
        if not info.name.rpartition('.')[2].startswith('_'):  # not the C extensions
            names.append(info.name)
    return names


def _refuse_keywords(function: Callable[..., Any], refused: frozenset[str],
                     where: str) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bad = refused.intersection(kwargs)
        if bad:
            raise TypeError(f'{where}() got an unexpected keyword argument '
                            f"'{sorted(bad)[0]}' (simulated Humble rclpy)")
        return function(*args, **kwargs)
    return wrapper


def _humble_list_parameters(self: Any, request: Any, response: Any) -> Any:
    """Humble's ListParameters service: it lists the node's names itself."""
    from edge_infer_ros.ros.compat import list_parameters_of
    node = self._get_node()
    response.result = list_parameters_of(node.get_parameters_by_prefix(''), request.prefixes,
                                         request.depth)
    return response


def _qos_event_module(event_handler: types.ModuleType,
                      humble: dict[str, Any]) -> types.ModuleType:
    """Humble's module of the QoS event classes; their constructors refuse newer keywords."""
    module = types.ModuleType('rclpy.qos_event', "Humble's QoS event classes (simulated).")
    for name in humble['names']:
        if not hasattr(event_handler, name):
            continue
        value = getattr(event_handler, name)
        old = humble['classes'].get(name, {}).get('params', {}).get('__init__')
        if isinstance(value, type) and old is not None:
            named = {n for n, p in inspect.signature(value.__init__).parameters.items()
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
            extra = frozenset(named) - frozenset(old)
            if extra:
                init = _refuse_keywords(value.__init__, extra, f'{name}.__init__')
                value = type(name, (value,), {'__init__': init, '__module__': 'rclpy.qos_event'})
                REFUSED_KEYWORDS.extend(('rclpy.qos_event', name, '__init__', k)
                                        for k in sorted(extra))
        setattr(module, name, value)
    return module


def apply() -> None:
    """Take away, in this process, what Humble's rclpy does not have (idempotent)."""
    global _applied
    if _applied:
        return
    humble = rclpy_surface.humble_surface()
    installed = rclpy_surface.installed_surface()
    # Load everything first: rclpy's own modules keep the names they imported.
    for name in _installed_modules():
        if not name.startswith('rclpy.experimental') and name != 'rclpy.qos_event':
            importlib.import_module(name)
    event_handler = sys.modules.get('rclpy.event_handler')
    HIDDEN_MODULES.update(set(installed) - set(humble))
    HIDDEN_MODULES.update(n for n in _installed_modules() if n not in humble)
    for name in HIDDEN_MODULES:
        sys.modules.pop(name, None)
        parent, _, child = name.rpartition('.')
        if parent in sys.modules and hasattr(sys.modules[parent], child):
            delattr(sys.modules[parent], child)
    sys.meta_path.insert(0, _HideModules())
    if event_handler is not None:
        qos_event = _qos_event_module(event_handler, humble['rclpy.qos_event'])
        sys.modules['rclpy.qos_event'] = qos_event
        sys.modules['rclpy'].qos_event = qos_event  # type: ignore[attr-defined]
    import rclpy.parameter_service
    rclpy.parameter_service.ParameterService._list_parameters_callback = \
        _humble_list_parameters  # type: ignore[method-assign]
    for module_name, module_surface in humble.items():
        module = sys.modules.get(module_name)
        if module is None or module_name == 'rclpy.qos_event':
            continue
        for class_name, old in module_surface['classes'].items():
            cls = getattr(module, class_name, None)
            new = installed.get(module_name, {}).get('classes', {}).get(class_name)
            if not isinstance(cls, type) or new is None:
                continue
            for member in sorted(set(new['members']) - set(old['members'])):
                if (module_name, class_name, member) in KEEP or member not in vars(cls):
                    continue
                if isinstance(vars(cls)[member], (staticmethod, classmethod, property)) or \
                        callable(vars(cls)[member]):
                    delattr(cls, member)
                    REMOVED_MEMBERS.append((module_name, class_name, member))
            for method, params in new['params'].items():
                extra = frozenset(params) - frozenset(old['params'].get(method, params))
                if extra and (module_name, class_name, method) in KEYWORDS_REFUSED_IN:
                    where = f'{class_name}.{method}'
                    setattr(cls, method, _refuse_keywords(vars(cls)[method], extra, where))
                    REFUSED_KEYWORDS.extend((module_name, class_name, method, k)
                                            for k in sorted(extra))
    _applied = True


def describe() -> str:
    """Say what the simulation took away (for the test log)."""
    return (f'simulated Humble rclpy: {len(HIDDEN_MODULES)} modules hidden '
            f'({", ".join(sorted(HIDDEN_MODULES))}); {len(REMOVED_MEMBERS)} members removed; '
            f'{len(REFUSED_KEYWORDS)} keyword arguments refused')
