"""The stage nodes' check for a second node of the same name in the graph."""

from __future__ import annotations

import time
from typing import Any

from edge_infer_ros.core.health import name_clash

#: Seconds after which the graph is read again although its count of nodes did not change
#: (one node left and another came between two checks).
RECHECK_S = 10.0


class NameClashCheck:
    """
    Mixin of a node: WARN (status and one log line) while its name is taken twice.

    Reading the graph's endpoints builds a Python object per node, every status of every
    stage; counting them does not. So the graph is read when the count changed, or
    :data:`RECHECK_S` after the last read, and the last answer kept in between.
    """

    _name_clash = ''
    _clash_count = -1
    _clash_read_s = float('-inf')

    def name_clash_warning(self) -> str:
        """Return the WARN of a name clash ('' if none), logged when it appears or changes."""
        node: Any = self
        count = node.count_publishers('/parameter_events')
        now_s = time.monotonic()
        if count == self._clash_count and now_s - self._clash_read_s < RECHECK_S:
            return self._name_clash
        self._clash_count, self._clash_read_s = count, now_s
        text = name_clash(node.get_fully_qualified_name(),
                          [(i.node_name, i.node_namespace, bytes(i.endpoint_gid)) for i in
                           node.get_publishers_info_by_topic('/parameter_events')])
        if text != self._name_clash:
            self._name_clash = text
            if text:
                node.get_logger().warning(text)
        return text
