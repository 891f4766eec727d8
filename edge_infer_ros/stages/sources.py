"""
Open a frame source by kind.

Its own module so that camera.py and the sources built on it (bag.py) do not import each other.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from edge_infer_ros.stages.camera import (FolderSource, FrameSource, SOURCE_KINDS, SourceError,
                                          SyntheticSource, V4L2Source, VideoFileSource)


def open_source(kind: str, uri: str, width: int, height: int, fps: float, seed: int,
                loop: bool, bag_topic: str = '',
                decode: Optional[Callable[[Any, str], Any]] = None) -> FrameSource:
    """
    Open a source by kind (see SOURCE_KINDS; 'topic' is handled by the node).

    ``decode`` (bag): the node's message-to-frame function, as its topic source uses.
    """
    if kind == 'synthetic':
        return SyntheticSource(width, height, seed)
    if kind == 'video':
        return VideoFileSource(uri, loop)
    if kind == 'v4l2':
        return V4L2Source(uri or '0', width, height, fps)
    if kind == 'folder':
        return FolderSource(uri, loop)
    if kind == 'bag':
        from edge_infer_ros.stages.bag import BagSource
        if decode is None:
            raise SourceError('the bag source needs the function that decodes a message')
        return BagSource(uri, bag_topic, decode, loop)
    raise SourceError(f'unknown source kind {kind!r}: expected one of {", ".join(SOURCE_KINDS)}')
