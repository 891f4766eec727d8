"""
Write the part of a rosdistro checkout that the package's manifests use, for test_package_xml.

For Humble, Jazzy and Kilted: their Ubuntu platforms and which of the ROS packages named in
package.xml and msg/package.xml each distribution releases; and the rosdep rules (base.yaml,
python.yaml) of the system keys named there. A key added to a manifest but missing here makes
the test fail until this is run again on a fresh clone of https://github.com/ros/rosdistro::

    python scripts/rosdistro_snapshot.py /path/to/rosdistro > test/data/rosdistro_snapshot.yaml
"""

from pathlib import Path
import subprocess
import sys

from catkin_pkg.package import parse_package
import yaml

ROOT = Path(__file__).resolve().parents[1]
DISTROS = ('humble', 'jazzy', 'kilted')
MANIFESTS = (ROOT / 'package.xml', ROOT / 'msg' / 'package.xml')


def declared_keys() -> set[str]:
    """Return every dependency name in the package's two manifests."""
    keys = set()
    for manifest in MANIFESTS:
        package = parse_package(str(manifest))
        for group in (package.build_depends, package.buildtool_depends, package.exec_depends,
                      package.test_depends, package.build_export_depends):
            keys.update(d.name for d in group)
    return keys


def _read(clone: Path, relative: str) -> str:
    """Read a file of the clone, from its work tree or, in a bare clone, from HEAD."""
    if (clone / relative).is_file():
        return (clone / relative).read_text()
    return subprocess.check_output(['git', '-C', str(clone), 'show', f'HEAD:{relative}'],
                                   text=True)


def main(argv: list[str]) -> int:
    """Print the snapshot of the rosdistro clone ``argv[0]`` as YAML."""
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    clone = Path(argv[0])
    keys = declared_keys()
    commit = subprocess.check_output(['git', '-C', str(clone), 'log', '-1', '--format=%H %cs'],
                                     text=True).strip()
    snapshot: dict = {'origin': f'ros/rosdistro @ {commit}', 'distributions': {}, 'rosdep': {}}
    for distro in DISTROS:
        dist = yaml.safe_load(_read(clone, f'{distro}/distribution.yaml'))
        released = set()
        for name, repo in dist['repositories'].items():
            if repo.get('release'):
                released.update(repo['release'].get('packages', [name]))
        snapshot['distributions'][distro] = {
            'ubuntu': dist['release_platforms'].get('ubuntu', []),
            'packages': sorted(keys & released)}
    for source in ('base.yaml', 'python.yaml'):
        rules = yaml.safe_load(_read(clone, f'rosdep/{source}'))
        for key in sorted(keys & set(rules)):
            rule = rules[key]
            snapshot['rosdep'][key] = {o: rule[o] for o in ('debian', 'ubuntu') if o in rule}
    yaml.safe_dump(snapshot, sys.stdout, sort_keys=True, default_flow_style=None, width=99)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
