"""
How a node process starts and ends: its command line, its signals, its orderly shutdown.

Why not rclpy's own signal handlers: they shut the context down at the first SIGINT while the
stages' threads still publish (``RCLError: publisher's context is invalid``), and a second SIGINT
(``ros2 launch`` forwards one to children that already got the terminal's, and systemd or
``kill -INT -PGID`` signal the whole group) raises ``KeyboardInterrupt`` in the middle of the
cleanup: a traceback, exit code -2 and a participant the ros2 daemon lists for minutes. Here a
SIGINT or SIGTERM only sets an event, however often it comes; the main thread then stops the
executor, takes every lifecycle node through its *shutdown* transition (cameras first, so no
new frame enters a half-stopped pipeline), destroys the nodes and only then shuts rclpy down.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any, Callable, Iterable, Optional, Sequence

from edge_infer_ros.core.params import param_file_error, params_files_in
import rclpy
from rclpy.context import Context
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.lifecycle import LifecycleNode
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args

#: The signals that end a node process cleanly (Ctrl-C, ros2 launch, systemd, docker stop).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Set by SIGINT/SIGTERM (any number of them) or by the end of the executor's thread."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ''
        self.failed = False

    def install(self) -> None:
        """Take over SIGINT and SIGTERM (main thread only; rclpy's handlers must be off)."""
        for number in STOP_SIGNALS:
            signal.signal(number, self._on_signal)

    def _on_signal(self, number: int, frame: Optional[FrameType]) -> None:
        self.request(signal.Signals(number).name)

    def request(self, reason: str, failed: bool = False) -> None:
        """Ask the process to stop (the first reason is kept)."""
        if not self.event.is_set():
            self.reason = reason
            self.failed = failed
        self.event.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until a stop is asked for (signals still run: the wait is interruptible)."""
        return self.event.wait(timeout)


def init(args: Optional[Sequence[str]] = None, context: Optional[Context] = None) -> StopRequest:
    """Initialise rclpy without its signal handlers and install the stop handlers instead."""
    rclpy.init(args=list(args) if args is not None else None, context=context,
               signal_handler_options=SignalHandlerOptions.NO)
    stop = StopRequest()
    stop.install()
    return stop


def spin_in_thread(executor: Executor, stop: StopRequest) -> threading.Thread:
    """Spin the executor on a thread of its own; its end (error, external shutdown) stops us."""
    def spin() -> None:
        try:
            executor.spin()
        except ExternalShutdownException:
            stop.request('ROS context shut down')
        except Exception as error:  # noqa: B902 - reported, and the process ends with 1
            print(f'[edge_infer_ros] executor failed: {type(error).__name__}: {error}',
                  file=sys.stderr)
            stop.request('executor failed', failed=True)
        else:
            stop.request('executor ended')

    thread = threading.Thread(target=spin, name='eir:executor', daemon=True)
    thread.start()
    return thread


def stop_nodes(nodes: Iterable[Node], report: Callable[[str], None]) -> None:
    """
    Take lifecycle nodes through *shutdown*, cameras first, then destroy every node.

    Call it with the executor stopped: transitions then run here and nothing else touches the
    nodes. A node that fails to stop is reported and the others still stop.
    """
    ordered = list(nodes)
    ordered.sort(key=lambda n: 0 if getattr(n, 'STAGE', '') == 'camera' else 1)
    for node in ordered:
        if isinstance(node, LifecycleNode):
            try:
                state = node._state_machine.current_state[1]
                if state not in ('finalized', 'errorprocessing'):
                    node.trigger_shutdown()
            except Exception as error:  # noqa: B902 - keep stopping the others
                report(f'{node.get_name()}: shutdown transition failed: {error}')
    for node in ordered:
        try:
            node.destroy_node()
        except Exception as error:  # noqa: B902
            report(f'{node.get_name()}: {error}')


def finish(executor: Executor, spin_thread: Optional[threading.Thread],
           nodes: Iterable[Node], context: Optional[Context] = None,
           report: Callable[[str], None] = lambda text: print(text, file=sys.stderr)) -> None:
    """Stop the executor, stop and destroy the nodes, then shut this process's rclpy down."""
    executor.shutdown(timeout_sec=2.0)
    if spin_thread is not None:
        spin_thread.join(timeout=3.0)
    stop_nodes(nodes, report)
    rclpy.try_shutdown(context=context)
    # Python's finalisation (after main returns; DDS and ONNX Runtime teardown take a while)
    # puts SIG_DFL back for signals that have a Python handler: a late second SIGINT would
    # then kill the process with -2. Ignored signals stay ignored, and nothing is left to stop.
    if threading.current_thread() is threading.main_thread():
        for number in STOP_SIGNALS:
            signal.signal(number, signal.SIG_IGN)


def parse_node_command_line(prog: str, description: str, epilog: str,
                            args: Optional[Sequence[str]] = None) -> list[str]:
    """
    Answer ``--help`` (and refuse unknown options) before any ROS node exists.

    Returns the full argument list for rclpy.init (ROS arguments included). Anything outside
    ``--ros-args ... --`` is this program's own: only ``-h``/``--help`` is known.
    """
    argv = list(sys.argv if args is None else args)
    own = refuse_bad_ros_arguments(prog, argv)[1:]
    parser = argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args([a for a in own if a != '--'])
    return argv


def refuse_bad_param_files(prog: str, paths: Iterable[str]) -> None:
    """Exit 2 with one line (file:line:column: problem) at the first file that does not parse."""
    for path in paths:
        problem = param_file_error(path)
        if problem:
            print(f'{prog}: {problem}', file=sys.stderr)
            raise SystemExit(2)
        refuse_bad_ros_arguments(prog, [prog, '--ros-args', '--params-file', path])


def refuse_bad_ros_arguments(prog: str, argv: Sequence[str]) -> list[str]:
    """
    Exit 2 with one line where a parameter file or the ROS arguments do not parse.

    Returns argv without its ROS arguments. Without this, rcl's refusal of a file came out of
    rclpy as a traceback (exit 1), its line buried in it and no column.
    """
    files = params_files_in(argv)
    for path in files:
        problem = param_file_error(path)
        if problem:
            print(f'{prog}: {problem}', file=sys.stderr)
            raise SystemExit(2)
    try:
        return list(remove_ros_args(list(argv)))
    except rclpy_implementation.RCLInvalidROSArgsError as error:
        # What rcl refuses beyond YAML syntax (a list of mixed types, ...): its own words.
        print(f"{prog}: {str(error).split(', at ')[0]}", file=sys.stderr)
        raise SystemExit(2)


def parameter_help(specs: Iterable[Any]) -> str:
    """Describe declared parameters for ``--help`` (name, type, default, range, description)."""
    lines = ['parameters (set with --ros-args -p NAME:=VALUE or --params-file FILE;',
             '"start-only" ones apply at the next configure):']
    for spec in specs:
        extra = spec.range_text().replace('\\|', '|')
        start_only = '' if spec.runtime else ', start-only'
        lines.append(f'  {spec.name} ({spec.type_name}, default {spec.default!r}'
                     f'{", " + extra if extra else ""}{start_only})')
        lines.append(f'      {spec.description}')
    return '\n'.join(lines)


def run_single(node_class: Any, args: Optional[list[str]] = None) -> None:
    """Run one stage node on its own (``ros2 run``), driving it to active with autostart."""
    prog = os.path.basename(sys.argv[0] if args is None else
                            (args[0] if args else node_class.DEFAULT_NAME))
    argv = parse_node_command_line(
        prog, (node_class.__doc__ or '').strip().split('\n')[0],
        parameter_help(node_class.declared_specs().values()), args)
    stop = init(argv)
    executor = SingleThreadedExecutor()
    nodes: list[Any] = []
    spin_thread = None
    failed = False
    try:
        node = node_class()
        nodes.append(node)
        executor.add_node(node)
        if node.p['autostart'] and not node.start():
            node.get_logger().error(f'could not start: {node.last_error}')
        spin_thread = spin_in_thread(executor, stop)
        stop.wait()
    except Exception as error:  # noqa: B902 - a clear message and exit code 1, no traceback
        print(f'[{prog}] {type(error).__name__}: {error}', file=sys.stderr)
        failed = True
    finally:
        finish(executor, spin_thread, nodes)
    if failed or stop.failed:
        sys.exit(1)
