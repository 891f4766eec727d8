"""Which Fast DDS the tests run on: the Jazzy wheels' 2.14 loses what 3.x delivers."""

from importlib import metadata


def fast_dds_2_wheels() -> bool:
    """Tell whether this runs on the Jazzy wheels' Fast DDS 2.14 (ros-fastrtps), not 3.x."""
    try:
        return metadata.version('ros-fastrtps').startswith('2.')
    except metadata.PackageNotFoundError:
        return False
