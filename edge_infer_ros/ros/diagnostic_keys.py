"""
The diagnostic value keys other code reads back: one name for writer and reader.

The split runner counts frames across processes from the stages' ``/diagnostics`` values, so
these keys are its API: a key renamed on one side only would make its report count 0
silently. Keys only people read (dashboards) stay where they are written.
"""

#: Camera: frames captured, and why the source ended ('running' while it goes on).
FRAMES_CAPTURED = 'frames_captured'
SOURCE_END = 'source_end'
SOURCE_RUNNING = 'running'
#: Every stage: frame counters over its inputs and outputs.
FRAMES_RECEIVED = 'frames_received'
FRAMES_DROPPED = 'frames_dropped'
FRAME_ERRORS = 'frame_errors'
FRAMES_PUBLISHED = 'frames_published'
FRAMES_LOST_IN_TRANSPORT = 'frames_lost_in_transport'
#: Action: commands published.
COMMANDS = 'commands'
#: Detector: the backend in use, and why it is not the preferred one.
BACKEND = 'backend'
BACKEND_DESCRIPTION = 'backend_description'
FALLBACK_REASON = 'fallback_reason'


def matched_subscriptions(topic: str) -> str:
    """Key of the subscriptions an output topic has matched."""
    return f'matched_subscriptions:{topic}'


def matched_publishers(topic: str) -> str:
    """Key of the publishers an input topic has matched."""
    return f'matched_publishers:{topic}'
