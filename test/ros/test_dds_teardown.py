"""
A stage node's process leaves nothing of its DDS participant behind in ``/dev/shm``.

rclpy's ``LifecycleNode.destroy_node`` leaves the lifecycle state machine, which holds the node
handle: the DDS participant then outlived every run, and Fast DDS left its shared-memory
segment (35 MB with the shipped profile) in ``/dev/shm``, one per process per run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

#: Run in a process of its own, alone in a ROS domain: the segments its participant maps are
#: its own, and its exit is the point.
SCRIPT = textwrap.dedent("""
    import os, re
    import rclpy
    from edge_infer_ros.ros.nodes.nms import NmsNode

    def own_segments():
        names = set()
        with open('/proc/self/maps') as maps:
            for line in maps:
                match = re.search(r'(/dev/shm/fast(?:dds|rtps)_[0-9a-f]+)$', line.strip())
                if match:
                    names.add(match.group(1))
        return names

    context = rclpy.Context()
    rclpy.init(context=context)
    node = NmsNode('teardown_probe', context=context)
    node.trigger_configure()
    node.trigger_activate()
    segments = own_segments()
    print('segments', sorted(segments))
    node.destroy_node()
    rclpy.shutdown(context=context)
    left = sorted(s for s in segments if os.path.exists(s))
    print('left', left)
""")


@pytest.mark.skipif(os.environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp') !=
                    'rmw_fastrtps_cpp' or not os.path.isdir('/dev/shm'),
                    reason='Fast DDS shared-memory segments in /dev/shm only')
def test_a_destroyed_stage_node_frees_its_fast_dds_segment() -> None:
    env = dict(os.environ, ROS_DOMAIN_ID=str(150 + os.getpid() % 50))
    result = subprocess.run([sys.executable, '-c', SCRIPT], env=env, text=True,
                            capture_output=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dict(line.split(' ', 1) for line in result.stdout.splitlines()
                 if line.startswith(('segments ', 'left ')))
    assert lines['segments'] != '[]', result.stdout  # it had one, or the test proves nothing
    assert lines['left'] == '[]', result.stdout
