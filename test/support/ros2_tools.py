"""
Where the ROS 2 tools come from in the tests: the environment, or build/ros2_tools.

A test that needs them (ros2 launch, vision_msgs) skips only where neither the environment nor
../shared/ros2_tools has them; where ../shared/ros2_tools is there but the tools are missing,
scripts/setup.sh was not run, and that is a failure, not a skip.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]


def shared_sources() -> Optional[Path]:
    """Return ../shared/ros2_tools beside the checkout (or beside a worktree's parent)."""
    for candidate in (ROOT.parent / 'shared' / 'ros2_tools',
                      ROOT.parent.parent / 'shared' / 'ros2_tools'):
        if (candidate / 'build.sh').is_file():
            return candidate
    return None


def missing(what: str) -> NoReturn:
    """Skip (no tools anywhere) or fail (they could have been built) for a missing tool."""
    sources = shared_sources()
    if sources is not None:
        pytest.fail(f'{what} is missing although {sources} is there: run bash scripts/setup.sh '
                    '(it builds the tools into build/ros2_tools) and . scripts/env.sh')
    pytest.skip(f'{what} is missing: neither the environment (a ROS 2 install) nor '
                '../shared/ros2_tools has it')
