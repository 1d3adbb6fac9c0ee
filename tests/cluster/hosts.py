"""Several hosts on this machine, for multi-host ``horovodrun``: network namespaces running sshd.

Each host is a network namespace of its own with one interface, ``eth0`` on every host (Horovod's
launcher needs one interface name common to all hosts), plugged into a bridge in a further
namespace, the switch. Each host runs Debian's ``sshd`` under ``unshare --uts`` with its own
hostname, a host key and an authorised client key made here for this cluster. ``ip netns exec``
mounts the cluster's own ``/etc/hosts`` (every host's name and address; Gloo resolves the workers'
host names) and ``/etc/ssh`` (the client trusts the cluster's host key, so nothing is written to
``~/.ssh``) over the machine's inside each host. ``horovodrun`` runs inside the first host, as a
user would run it on the first machine of a cluster, and reaches the others by ssh.

A link may be shaped like a NIC: ``rate`` (tc syntax, e.g. ``100mbit``) limits each direction of each
host's link, by a token bucket on both ends of its veth pair; ``delay`` (e.g. ``1ms``) adds ``netem``'s
delay under it, where the kernel has netem.

Everything made (namespaces, their interfaces, sshd, keys, files under /etc/netns) is removed on
exit, also when building failed half way. Addresses are private and live only inside these
namespaces: nothing in the machine's own network stack changes. Needs root, iproute2 and
openssh-server (scripts/setup.sh installs them).

Example:
    python -m tests.cluster.hosts --hosts 2 --rate 100mbit -- --gloo python examples/pytorch_digits.py
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOROVODRUN = Path(sys.executable).with_name("horovodrun")
SSHD = "/usr/sbin/sshd"
SSH_PORT = 2222
INTERFACE = "eth0"
SUBNET = "10.213.0"  # host i is SUBNET.(10 + i)/24, inside this cluster's namespaces only
MTU = 9000
RATE_PREFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


class ClusterUnavailable(RuntimeError):
    """This machine does not let the harness build hosts (not root, no iproute2, sshd or namespaces)."""


@dataclass(frozen=True)
class Host:
    """One host of a cluster: its name (its hostname and the name others reach it by), network namespace and address."""

    name: str
    namespace: str
    address: str

    def exec_prefix(self) -> list[str]:
        """What runs a command inside this host: its network namespace, its hostname."""
        return ["ip", "netns", "exec", self.namespace, "unshare", "--uts", "sh", "-c",
                f'hostname {self.name} && exec "$0" "$@"']


def bits_per_second(rate: str) -> float:
    """A tc rate in bits (``100mbit``, ``1gbit``, ``500kbit``) as bits per second."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kmgt]?)bit", rate.strip().lower())
    if match is None:
        raise ValueError(f"rate {rate!r}: give it as tc does in bits, e.g. 100mbit, 1gbit or 10gbit")
    return float(match[1]) * RATE_PREFIXES[match[2]]


def unavailable_reason() -> str | None:
    """Why this machine cannot build a cluster, or None when it can."""
    if os.geteuid() != 0:
        return "the cluster harness must run as root (ip netns add)"
    for tool in ("ip", "tc", "unshare", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"the cluster harness needs {tool} (scripts/setup.sh installs iproute2 and openssh)"
    if not os.access(SSHD, os.X_OK):
        return f"the cluster harness needs {SSHD} (apt-get install openssh-server)"
    return None


class Cluster:
    """``hosts`` hosts linked by one switch, each running sshd; a context manager that tears all down.

    Args:
        hosts: how many hosts (2 or more).
        rate: each direction of each host's link limited to this rate (tc syntax), or None.
        delay: one-way delay added in each direction (tc syntax, e.g. ``1ms``), or None.

    Example:
        with Cluster(2) as cluster:
            cluster.horovodrun(["--gloo", sys.executable, "train.py"], timeout=300)
    """

    def __init__(self, hosts: int, rate: str | None = None, delay: str | None = None) -> None:
        if hosts < 2:
            raise ValueError(f"a cluster needs at least 2 hosts, got {hosts}")
        self.tag = f"distq-{uuid.uuid4().hex[:6]}"
        self.switch = f"{self.tag}-switch"
        self.hosts = [Host(f"host{i}", f"{self.tag}-host{i}", f"{SUBNET}.{10 + i}") for i in range(1, hosts + 1)]
        if rate is not None:
            bits_per_second(rate)  # a bad rate fails here, before anything is made
        self.rate, self.delay = rate, delay
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self._namespaces: list[str] = []
        self._sshd: list[subprocess.Popen] = []

    def __enter__(self) -> Cluster:
        reason = unavailable_reason()
        if reason:
            shutil.rmtree(self.scratch, ignore_errors=True)
            raise ClusterUnavailable(reason)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def identity_file(self) -> Path:
        return self.scratch / "client_key"

    def host_list(self, slots: int = 1) -> str:
        """horovodrun's ``-H`` value: every host with ``slots`` slots."""
        return ",".join(f"{host.name}:{slots}" for host in self.hosts)

    def horovodrun_command(self, arguments: list[str], slots: int = 1) -> list[str]:
        """The command line that runs ``horovodrun ARGUMENTS`` on the first host, a worker per slot of every host."""
        return [*self.hosts[0].exec_prefix(), str(HOROVODRUN), "-np", str(slots * len(self.hosts)),
                "-H", self.host_list(slots), "-p", str(SSH_PORT), "--ssh-identity-file", str(self.identity_file),
                "--network-interface", INTERFACE, *arguments]

    def elastic_horovodrun_command(self, discovery_script: Path, arguments: list[str]) -> list[str]:
        """The command line that runs ``horovodrun ARGUMENTS`` in elastic mode on the first host: 1
        to len(hosts) workers, on the hosts ``discovery_script`` prints (``host1:1`` ...)."""
        return [*self.hosts[0].exec_prefix(), str(HOROVODRUN), "-np", "1", "--min-np", "1",
                "--max-np", str(len(self.hosts)), "--host-discovery-script", str(discovery_script),
                "-p", str(SSH_PORT), "--ssh-identity-file", str(self.identity_file), "--network-interface", INTERFACE,
                *arguments]

    def horovodrun(self, arguments: list[str], timeout: float, slots: int = 1) -> subprocess.CompletedProcess:
        """Runs ``horovodrun ARGUMENTS`` from the checkout on the first host; kills the whole job on timeout."""
        process = self.popen(self.horovodrun_command(arguments, slots))
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(process)
            output, _ = process.communicate()
            output += f"\n(killed: ran past {timeout:g} s)"
        return subprocess.CompletedProcess(process.args, process.returncode, output)

    @staticmethod
    def popen(command: list[str], environment: dict[str, str] | None = None) -> subprocess.Popen:
        """Starts ``command`` from the checkout in a session of its own, with this environment and
        ``environment``; its standard output and error come back together, as text, in ``stdout``.
        Workers that horovodrun starts over ssh see only what it passes them."""
        return subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(environment or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def stop(self, process: subprocess.Popen) -> None:
        """Kills a job started by :meth:`popen`: the launcher's process group and every worker on every host."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        self.kill_workers()

    def kill_host(self, index: int) -> None:
        """Kills everything running on host ``index`` (0-based): its sshd and every worker it started."""
        self._kill_namespace(self.hosts[index].namespace)

    def cut_host(self, index: int) -> None:
        """Takes host ``index`` (0-based) off the network as a failed switch port or cable does: its
        port on the switch goes down, so nothing it sends arrives and nothing reaches it, while its
        processes run on. Its peers see no FIN and no RST: only their own timeouts can tell."""
        _ip("-n", self.switch, "link", "set", f"port{index + 1}", "down")

    def kill_workers(self) -> None:
        """Kills every process on every host but sshd's listeners."""
        listeners = {process.pid for process in self._sshd}
        for host in self.hosts:
            for pid in self._pids(host.namespace):
                if pid not in listeners:
                    _kill(pid)

    def close(self) -> None:
        """Kills every process on the hosts and removes everything the cluster made."""
        for process in self._sshd:
            _kill(process.pid)
        for namespace in reversed(self._namespaces):
            self._kill_namespace(namespace)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
            shutil.rmtree(Path("/etc/netns") / namespace, ignore_errors=True)
        for process in self._sshd:
            process.wait(timeout=10)
        with contextlib.suppress(OSError):  # ip netns made /etc/netns; left only if something else uses it
            Path("/etc/netns").rmdir()
        self._namespaces.clear()
        self._sshd.clear()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _build(self) -> None:
        self._make_keys()
        self._add_namespace(self.switch)
        _ip("-n", self.switch, "link", "add", "switch0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "switch0", "up")
        for number, host in enumerate(self.hosts, 1):
            self._add_namespace(host.namespace)
            port = f"port{number}"
            _ip("-n", self.switch, "link", "add", port, "mtu", str(MTU), "type", "veth",
                "peer", "name", INTERFACE, "mtu", str(MTU), "netns", host.namespace)
            _ip("-n", self.switch, "link", "set", port, "master", "switch0", "up")
            _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", INTERFACE)
            _ip("-n", host.namespace, "link", "set", INTERFACE, "up")
            _ip("-n", host.namespace, "link", "set", "lo", "up")
            self._shape(self.switch, port)
            self._shape(host.namespace, INTERFACE)
            self._write_etc(host)
        for host in self.hosts:
            self._start_sshd(host)
        for host in self.hosts:
            self._wait_for_ssh(host)

    def _add_namespace(self, namespace: str) -> None:
        try:
            _ip("netns", "add", namespace)
        except subprocess.CalledProcessError as error:
            raise ClusterUnavailable(f"cannot create a network namespace: {error.stderr.strip()}") from error
        self._namespaces.append(namespace)

    def _shape(self, namespace: str, device: str) -> None:
        """Limits what ``device`` sends: a token bucket at ``rate`` (as e2e's loopback), under a
        ``netem`` delay when one is asked for."""
        tc = ["tc", "-n", namespace, "qdisc", "add", "dev", device]
        parent = ["root"]
        if self.delay:
            try:
                subprocess.run([*tc, "root", "handle", "1:", "netem", "delay", self.delay, "limit", "10000"],
                               check=True, capture_output=True, text=True)
            except subprocess.CalledProcessError as error:
                raise ClusterUnavailable(f"cannot add a delay of {self.delay} (tc netem: {error.stderr.strip()}); "
                                         "this kernel may lack the netem qdisc") from error
            parent = ["parent", "1:1"]
        if self.rate:
            # The bucket holds 2 ms at the rate (at least a few jumbo frames): a NIC sends nothing faster
            # than its rate for longer than that, and the kernel's timers can still keep up at 10 Gbit/s.
            burst = max(4 * MTU, round(bits_per_second(self.rate) / 8 * 0.002))
            subprocess.run([*tc, *parent, "tbf", "rate", self.rate, "burst", str(burst), "latency", "100ms"],
                           check=True, capture_output=True, text=True)

    def _make_keys(self) -> None:
        self.scratch.chmod(0o700)
        for key in ("client_key", "host_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.tag, "-f",
                            str(self.scratch / key)], check=True, capture_output=True)
        shutil.copy(self.scratch / "client_key.pub", self.scratch / "authorized_keys")
        host_key = (self.scratch / "host_key.pub").read_text().split()
        (self.scratch / "known_hosts").write_text(
            "".join(f"[{host.name}]:{SSH_PORT},[{host.address}]:{SSH_PORT} {host_key[0]} {host_key[1]}\n"
                    for host in self.hosts))

    def _write_etc(self, host: Host) -> None:
        """The host's /etc/hosts and /etc/ssh, which ``ip netns exec`` mounts over the machine's."""
        etc = Path("/etc/netns") / host.namespace
        (etc / "ssh").mkdir(parents=True)
        (etc / "hosts").write_text("127.0.0.1 localhost\n" +
                                   "".join(f"{other.address} {other.name}\n" for other in self.hosts))
        (etc / "ssh" / "ssh_config").write_text(
            f"Host *\n  Port {SSH_PORT}\n  IdentityFile {self.identity_file}\n"
            f"  UserKnownHostsFile {self.scratch / 'known_hosts'}\n  StrictHostKeyChecking yes\n"
            "  LogLevel ERROR\n  BatchMode yes\n")
        (etc / "ssh" / "sshd_config").write_text(
            f"Port {SSH_PORT}\nListenAddress {host.address}\nHostKey {self.scratch / 'host_key'}\n"
            f"AuthorizedKeysFile {self.scratch / 'authorized_keys'}\nPidFile {self.scratch / host.name}.pid\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nStrictModes no\nPrintMotd no\nPrintLastLog no\n"
            # Remote workers see only the environment that horovodrun writes on their command line.
            "SetEnv PYTHONUNBUFFERED=1\n")

    def _start_sshd(self, host: Host) -> None:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
        log = self.scratch / f"{host.name}-sshd.log"
        self._sshd.append(subprocess.Popen(
            [*host.exec_prefix(), SSHD, "-D", "-E", str(log), "-f", "/etc/ssh/sshd_config"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))

    def _wait_for_ssh(self, host: Host, seconds: float = 20) -> None:
        """Returns once the first host reaches ``host`` by ssh; raises with sshd's log otherwise."""
        deadline = time.monotonic() + seconds
        while True:
            probe = subprocess.run([*self.hosts[0].exec_prefix(), "ssh", host.name, "hostname"],
                                   capture_output=True, text=True)
            if probe.returncode == 0 and probe.stdout.strip() == host.name:
                return
            if time.monotonic() > deadline:
                log = (self.scratch / f"{host.name}-sshd.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"ssh to {host.name} failed: {probe.stderr.strip()}\nsshd's log:\n{log}")
            time.sleep(0.2)

    @staticmethod
    def _pids(namespace: str) -> list[int]:
        listing = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True)
        return [int(pid) for pid in listing.stdout.split()]

    def _kill_namespace(self, namespace: str) -> None:
        for pid in self._pids(namespace):
            _kill(pid)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.hosts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--slots", type=int, default=1, help="workers per host")
    parser.add_argument("--rate", default=None, help="each link's rate, e.g. 100mbit")
    parser.add_argument("--delay", default=None, help="each link's one-way delay, e.g. 1ms")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="horovodrun's arguments after --")
    args = parser.parse_args(argv)
    arguments = args.arguments[1:] if args.arguments[:1] == ["--"] else args.arguments
    with Cluster(args.hosts, args.rate, args.delay) as cluster:
        result = cluster.horovodrun(arguments, args.timeout, args.slots)
    sys.stdout.write(result.stdout)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
