"""
Give every process this launch starts the package's Fast DDS profile (config/fastdds_shm.xml).

Frames larger than Fast DDS's default 512 KiB shared-memory segment fall back to fragmented
UDP, where best-effort readers lose most of them; the profile's 32 MiB segment keeps them in
shared memory (UDP stays for other hosts). It must be set on the *publishing* side, so include
this in the launch file that starts the robot's own camera driver, before the driver:

    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch.substitutions import PathJoinSubstitution
    from launch_ros.substitutions import FindPackageShare

    IncludeLaunchDescription(PythonLaunchDescriptionSource(PathJoinSubstitution(
        [FindPackageShare('edge_infer_ros'), 'launch', 'dds_profile.launch.py'])))

It only sets ``FASTDDS_DEFAULT_PROFILES_FILE`` (for the actions after it in the including
launch file too), and leaves a value the user already set alone; ``profile:=<file>`` picks
another file. Without launch, the same in a shell:

    export FASTDDS_DEFAULT_PROFILES_FILE=$(ros2 pkg prefix edge_infer_ros)/share/edge_infer_ros/config/fastdds_shm.xml
"""  # noqa: E501 - the shell line is meant to be copied whole

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import (EnvironmentVariable, LaunchConfiguration,
                                  PathJoinSubstitution)
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """Return the launch description: one argument, one environment variable."""
    shipped = PathJoinSubstitution([FindPackageShare('edge_infer_ros'), 'config',
                                    'fastdds_shm.xml'])
    return LaunchDescription([
        DeclareLaunchArgument(
            'profile',
            default_value=EnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE',
                                              default_value=shipped),
            description='Fast DDS XML profile for the processes started after this (default: '
                        "$FASTDDS_DEFAULT_PROFILES_FILE when set, else the package's 32 MiB "
                        'shared-memory profile)'),
        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', LaunchConfiguration('profile')),
    ])
