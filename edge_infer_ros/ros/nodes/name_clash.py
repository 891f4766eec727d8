"""The stage nodes' check for a second node of the same name in the graph."""

from __future__ import annotations

from edge_infer_ros.core.health import name_clash


class NameClashCheck:
    """Mixin of a node: WARN (status and one log line) while its name is taken twice."""

    _name_clash = ''

    def name_clash_warning(self) -> str:
        """Return the WARN of a name clash ('' if none), logged when it appears or changes."""
        text = name_clash(self.get_fully_qualified_name(),  # type: ignore[attr-defined]
                          self.get_node_names_and_namespaces())  # type: ignore[attr-defined]
        if text != self._name_clash:
            self._name_clash = text
            if text:
                self.get_logger().warning(text)  # type: ignore[attr-defined]
        return text
