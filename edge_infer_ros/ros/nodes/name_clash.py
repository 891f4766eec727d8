"""The stage nodes' check for a second node of the same name in the graph."""

from __future__ import annotations

from typing import Any

from edge_infer_ros.core.health import name_clash


class NameClashCheck:
    """Mixin of a node: WARN (status and one log line) while its name is taken twice."""

    _name_clash = ''

    def name_clash_warning(self) -> str:
        """Return the WARN of a name clash ('' if none), logged when it appears or changes."""
        node: Any = self
        text = name_clash(node.get_fully_qualified_name(),
                          [(i.node_name, i.node_namespace, bytes(i.endpoint_gid)) for i in
                           node.get_publishers_info_by_topic('/parameter_events')])
        if text != self._name_clash:
            self._name_clash = text
            if text:
                node.get_logger().warning(text)
        return text
