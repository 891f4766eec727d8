"""Another process in a test: publishes on the pipeline inputs, reads cmd_vel and diagnostics."""

from __future__ import annotations

from typing import Any, Callable, Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import TwistStamped
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from support.waiting import wait_for


class Outside:
    """A node in a context of its own, so what it sees is what another process would see."""

    def __init__(self, context: Context, name: str = 'outside',
                 listen_commands: bool = False) -> None:
        self.node = Node(name, context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.commands: list[TwistStamped] = []
        self.statuses: dict[str, DiagnosticStatus] = {}
        if listen_commands:  # an outside cmd_vel subscriber makes the action build messages
            self.node.create_subscription(TwistStamped, 'cmd_vel', self.commands.append, 100)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 50)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.statuses[status.name] = status

    def spin_until(self, condition: Callable[[], Any], timeout: float) -> bool:
        """Spin this node until ``condition()`` holds or the timeout passes."""
        return wait_for(condition, timeout, executor=self.executor)

    def status(self, suffix: str) -> Optional[DiagnosticStatus]:
        """Return the last status whose name ends with ``suffix``."""
        return next((s for n, s in self.statuses.items() if n.endswith(suffix)), None)

    def close(self) -> None:
        """Destroy the node and its executor."""
        self.node.destroy_node()
        self.executor.shutdown()
