"""
Hosts on one machine for tests: Linux network namespaces joined by veth links and a bridge.

:class:`VirtualLan` builds one namespace per host plus a "switch" namespace that holds a
bridge; each host has an ``eth0`` (a veth whose peer is a port of the bridge) with a private
10.x address, and its own loopback. Nothing is added to the machine's own network namespace:
the addresses, the routes and all traffic between the hosts exist only inside the namespaces,
and deleting the namespaces (:meth:`VirtualLan.destroy`) removes every link with them.

Processes are started in a host with ``ip netns exec`` (:meth:`VirtualLan.popen`);
:meth:`VirtualLan.destroy` stops whatever still runs in the namespaces before deleting them,
so a test that fails half-way leaves nothing behind. Needs root and iproute2 (``ip``).
"""

from __future__ import annotations

from dataclasses import dataclass
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Optional, Sequence

#: iproute2's ``ip`` (also found in /usr/sbin and /sbin when those are not on PATH).
IP = shutil.which('ip') or next((p for p in ('/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip')
                                 if os.access(p, os.X_OK)), '')
#: Prefix of every namespace this module creates: ``<prefix>-<pid>[-<label>]-<host>``.
PREFIX = 'eirnet'


def _ip(*args: str, check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess:
    """Run ``ip ARGS``; raise RuntimeError with ip's message when it fails and check is set."""
    result = subprocess.run([IP or 'ip', *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f'ip {" ".join(args)} failed ({result.returncode}): '
                           f'{result.stderr.strip() or result.stdout.strip()}')
    return result


def unavailable_reason() -> Optional[str]:
    """Return why namespaces cannot be used here (not root, no ``ip``, refused), or None."""
    if not hasattr(os, 'geteuid') or os.geteuid() != 0:
        return 'network namespaces need root (ip netns add)'
    if not IP:
        return 'iproute2 is not installed (no `ip` on PATH); apt-get install -y iproute2'
    probe = f'{PREFIX}-{os.getpid()}-probe'
    try:
        added = _ip('netns', 'add', probe, check=False)
        if added.returncode != 0:
            return f'`ip netns add` is refused here: {added.stderr.strip()}'
        veth = _ip('-n', probe, 'link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'p1',
                   check=False)
        if veth.returncode != 0:
            return f'veth links cannot be created here: {veth.stderr.strip()}'
        return None
    finally:
        _ip('netns', 'del', probe, check=False)


def namespaces() -> list[str]:
    """Return the names of the network namespaces of this machine."""
    result = _ip('netns', 'list', check=False)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers() -> list[str]:
    """
    Delete namespaces of this module whose creating process is gone (a crashed earlier run).

    Namespaces of a run still alive (e.g. a parallel test run) are left alone. Returns the
    names deleted.
    """
    removed = []
    for name in namespaces():
        parts = name.split('-')
        if len(parts) < 3 or parts[0] != PREFIX or not parts[1].isdigit():
            continue
        if _pid_alive(int(parts[1])):
            continue
        _kill_namespace_processes(name, grace_s=0.5)
        if _ip('netns', 'del', name, check=False).returncode == 0:
            removed.append(name)
    return removed


def _namespace_pids(netns: str) -> list[int]:
    result = _ip('netns', 'pids', netns, check=False)
    return [int(p) for p in result.stdout.split() if p.isdigit()]


def _kill_namespace_processes(netns: str, grace_s: float) -> None:
    """SIGTERM every process in a namespace, then SIGKILL what is left after grace_s."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
        pids = _namespace_pids(netns)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _namespace_pids(netns):
            time.sleep(0.05)


@dataclass(frozen=True)
class Host:
    """One host of the virtual LAN: its namespace, interface and address."""

    name: str
    netns: str
    address: str
    ifname: str = 'eth0'
    port: str = ''  # the bridge port (in the switch namespace) its eth0 is plugged into


class VirtualLan:
    """
    Hosts (network namespaces) on one bridged 10.x /24, built by :meth:`create`.

    Host ``i`` (in the order of ``host_names``) gets ``<subnet>.<11 + i>``. With
    ``multicast=False`` the switch forwards no multicast (``mcast_flood off`` on every port),
    so only unicast discovery (static peers) connects DDS participants across hosts.

    Use as a context manager or call :meth:`destroy` in a finalizer: it is safe to call
    at any point, also after a partial :meth:`create`, and more than once.
    """

    def __init__(self, host_names: Sequence[str] = ('a', 'b', 'c'),
                 subnet: str = '10.213.7', label: str = '', multicast: bool = True) -> None:
        # <pid>[-<label>]: remove_leftovers() knows a namespace's owner by the pid.
        self.tag = f'{os.getpid()}-{label}' if label else str(os.getpid())
        self.multicast = multicast
        self.switch = f'{PREFIX}-{self.tag}-sw'
        self.subnet = subnet
        self.hosts: dict[str, Host] = {}
        for index, name in enumerate(host_names):
            self.hosts[name] = Host(name, f'{PREFIX}-{self.tag}-{name}',
                                    f'{subnet}.{index + 11}', 'eth0', f'port{index}')
        self._created: list[str] = []
        self._processes: list[subprocess.Popen] = []

    # -- building and tearing down ---------------------------------------------------------
    def create(self) -> 'VirtualLan':
        """Create the switch and the hosts, plug every host in, bring every link up."""
        try:
            self._add_netns(self.switch)
            _ip('-n', self.switch, 'link', 'set', 'lo', 'up')
            # No multicast snooping: the bridge floods multicast (DDS discovery) to every port.
            _ip('-n', self.switch, 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0',
                'mcast_snooping', '0')
            _ip('-n', self.switch, 'link', 'set', 'br0', 'up')
            for host in self.hosts.values():
                self._add_netns(host.netns)
                _ip('-n', host.netns, 'link', 'set', 'lo', 'up')
                _ip('-n', host.netns, 'link', 'add', host.ifname, 'type', 'veth', 'peer',
                    'name', host.port, 'netns', self.switch)
                _ip('-n', self.switch, 'link', 'set', host.port, 'master', 'br0')
                if not self.multicast:  # the switch forwards no multicast at all
                    _ip('-n', self.switch, 'link', 'set', host.port, 'type', 'bridge_slave',
                        'mcast_flood', 'off')
                _ip('-n', self.switch, 'link', 'set', host.port, 'up')
                _ip('-n', host.netns, 'addr', 'add', f'{host.address}/24', 'dev', host.ifname)
                _ip('-n', host.netns, 'link', 'set', host.ifname, 'up')
                self._multicast_route(host)
        except BaseException:
            self.destroy()
            raise
        return self

    def _add_netns(self, name: str) -> None:
        _ip('netns', 'add', name)
        self._created.append(name)

    def destroy(self) -> None:
        """Stop every process started in the hosts, then delete the namespaces (and links)."""
        for process in self._processes:
            _stop(process)
        self._processes.clear()
        for name in reversed(self._created):
            _kill_namespace_processes(name, grace_s=2.0)
            _ip('netns', 'del', name, check=False)
        self._created.clear()

    def __enter__(self) -> 'VirtualLan':
        return self.create()

    def __exit__(self, *exc: Any) -> None:
        self.destroy()

    # -- using the hosts -------------------------------------------------------------------
    def exec_prefix(self, host: str) -> list[str]:
        """Return the command prefix that runs a program in a host (``ip netns exec NS``)."""
        return [IP or 'ip', 'netns', 'exec', self.hosts[host].netns]

    def popen(self, host: str, args: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        """Start a program in a host (in a new session); destroy() stops it."""
        kwargs.setdefault('start_new_session', True)
        process = subprocess.Popen(self.exec_prefix(host) + list(args), **kwargs)
        self._processes.append(process)
        return process

    def run(self, host: str, args: Sequence[str], timeout: float = 10.0
            ) -> subprocess.CompletedProcess:
        """Run a short command in a host and return its result (output captured)."""
        return subprocess.run(self.exec_prefix(host) + list(args), capture_output=True,
                              text=True, timeout=timeout)

    def set_link(self, host: str, up: bool) -> None:
        """Unplug (up=False) or plug back in (up=True) a host's network cable (its eth0)."""
        item = self.hosts[host]
        _ip('-n', item.netns, 'link', 'set', item.ifname, 'up' if up else 'down')
        if up:
            # The kernel drops the routes of a link that goes down; put the multicast one back.
            self._multicast_route(item)

    def _multicast_route(self, host: Host) -> None:
        """Send multicast (DDS discovery) out of eth0 whatever a socket's defaults are."""
        _ip('-n', host.netns, 'route', 'replace', '224.0.0.0/4', 'dev', host.ifname)

    def udp_reachable(self, source: str, target: str, timeout_s: float = 2.0) -> bool:
        """Return whether a UDP datagram from ``source`` arrives at ``target`` (Python only)."""
        address = self.hosts[target].address
        receiver = self.popen(target, [sys.executable, '-c', _UDP_RECEIVER, address,
                                       str(timeout_s)], stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.2)
            self.run(source, [sys.executable, '-c', _UDP_SENDER, address], timeout=5.0)
            out, _ = receiver.communicate(timeout=timeout_s + 5.0)
            return out.strip() == 'ok'
        finally:
            _stop(receiver)


_UDP_RECEIVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 47999))
s.settimeout(float(sys.argv[2]))
try:
    s.recvfrom(64)
    print('ok')
except OSError:
    print('timeout')
"""
_UDP_SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(5):
    s.sendto(b'hello', (sys.argv[1], 47999))
    time.sleep(0.1)
"""


def _stop(process: subprocess.Popen, grace_s: float = 3.0) -> None:
    """Stop a process (its whole session): SIGINT, then SIGTERM, then SIGKILL."""
    if process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                process.send_signal(sig)
            except ProcessLookupError:
                return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
