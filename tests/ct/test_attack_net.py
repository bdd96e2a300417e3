"""Anti-spoofing on the container bridge: a container can use only its own
MAC and IPv4 address on its bridge port (an nftables bridge table per
container, kvz_NAME). Every attack is checked from the host's side: its
neighbour table, its reachability of the victim, what a socket on the host
receives, the table's drop counter."""
import json
import os
import socket
import subprocess
import time

import pytest

from ctenv import UID, leftovers

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="kvz-ct tests need root")

NET = f"172.26.{UID % 250}"
HOST, ATTACKER, VICTIM = f"{NET}.1", f"{NET}.21", f"{NET}.22"


def nft_tables():
    r = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    return r.stdout.split()


def spoofed_count(table):
    r = subprocess.run(["nft", "-j", "list", "counter", "bridge", table, "spoofed"],
                       capture_output=True, text=True, check=True)
    for item in json.loads(r.stdout)["nftables"]:
        if "counter" in item:
            return item["counter"]["packets"]
    raise AssertionError(r.stdout)


def neigh_mac(ip, dev):
    out = subprocess.run(["ip", "neigh", "show", "to", ip, "dev", dev], capture_output=True,
                         text=True, check=True).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else None


def host_ping(ip):
    return subprocess.run(["ping", "-c", "1", "-W", "2", ip], capture_output=True).returncode == 0


@pytest.fixture
def bridge():
    br = f"kvza{UID}"
    yield br
    subprocess.run(["ip", "link", "del", br], capture_output=True)


@pytest.fixture
def listener():
    """A UDP socket on the host's bridge address: what reaches the host."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield s
    s.close()


def received(sock, wait=1.5):
    got = []
    sock.settimeout(wait)
    try:
        while True:
            data, addr = sock.recvfrom(1024)
            got.append((data.decode(), addr[0]))
            sock.settimeout(0.3)
    except socket.timeout:
        return got


def net_arg(bridge, ip):
    return ["--net", f"bridge={bridge},ip={ip}/24,gw={HOST}"]


def test_spoofing_from_a_container_fails(env, bbroot, bridge, listener):
    a, v = env.name("atk"), env.name("vic")
    env.start(v, "--rootfs", bbroot, *net_arg(bridge, VICTIM))
    env.start(a, "--rootfs", bbroot, *net_arg(bridge, ATTACKER))
    vmac, amac = env.state(v)["mac"], env.state(a)["mac"]
    assert vmac != amac and f"link/ether {vmac}" in env.exec(v, "ip", "link", "show", "eth0").stdout
    assert env.state(a)["nft-table"] == f"kvz_{a}" and f"kvz_{a}" in nft_tables()
    listener.bind((HOST, 0))
    port = str(listener.getsockname()[1])
    # Before: the host knows the victim, and both containers reach the host
    # from their own addresses (the attacker thereby knows the host's MAC).
    assert host_ping(VICTIM) and neigh_mac(VICTIM, bridge) == vmac
    env.exec(v, "ctprobe", "udpsend", VICTIM, HOST, port, "victim")
    env.exec(a, "ctprobe", "udpsend", ATTACKER, HOST, port, "attacker")
    assert sorted(received(listener)) == [("attacker", ATTACKER), ("victim", VICTIM)]
    dropped = spoofed_count(f"kvz_{a}")
    time.sleep(1.2)  # past the neighbour entry's locktime: an update would be taken

    # The attacker takes the victim's address: gratuitous ARP and replies,
    # ping and UDP from it.
    env.exec(a, "ip", "addr", "add", f"{VICTIM}/24", "dev", "eth0")
    env.exec(a, "arping", "-U", "-c", "2", "-I", "eth0", "-s", VICTIM, VICTIM, check=False)
    env.exec(a, "arping", "-A", "-c", "2", "-I", "eth0", "-s", VICTIM, VICTIM, check=False)
    assert env.exec(a, "ping", "-c", "1", "-W", "1", "-I", VICTIM, HOST, check=False).returncode != 0
    env.exec(a, "ctprobe", "udpsend", VICTIM, HOST, port, "spoofed-ip")
    # Then the victim's MAC, with its own address and with the victim's.
    env.exec(a, "ip", "link", "set", "eth0", "address", vmac)
    env.exec(a, "arping", "-U", "-c", "2", "-I", "eth0", "-s", VICTIM, VICTIM, check=False)
    env.exec(a, "ctprobe", "udpsend", ATTACKER, HOST, port, "spoofed-mac")
    env.exec(a, "ctprobe", "udpsend", VICTIM, HOST, port, "spoofed-both")

    # The host: the victim's MAC is still the victim's, it still reaches the
    # victim, and nothing spoofed arrived; the table counted the drops.
    assert received(listener) == []
    assert neigh_mac(VICTIM, bridge) == vmac
    assert host_ping(VICTIM)
    assert spoofed_count(f"kvz_{a}") >= dropped + 8
    # The victim's own traffic still works.
    env.exec(v, "ping", "-c", "1", "-W", "2", HOST)
    env.exec(v, "ctprobe", "udpsend", VICTIM, HOST, port, "victim-after")
    assert received(listener) == [("victim-after", VICTIM)]

    # No IPv6 from the port (containers get no IPv6 configuration): the
    # host's link-local address on the bridge does not answer.
    ll = subprocess.run(["ip", "-6", "-br", "addr", "show", bridge], capture_output=True,
                        text=True).stdout.split()[2:]
    if ll:
        six = env.exec(v, "ping6", "-c", "1", "-W", "1", ll[0].split("/")[0] + "%eth0", check=False)
        assert six.returncode != 0, six.stdout

    veth = env.state(a)["veth"]
    env.stop(a)
    assert f"kvz_{a}" not in nft_tables()
    assert not leftovers(env, a, veth=veth)
    env.stop(v)
    assert f"kvz_{v}" not in nft_tables()


def test_table_goes_with_a_killed_supervisor(env, bbroot, bridge):
    """The table is owned by the supervisor's netlink socket: a SIGKILLed
    supervisor leaves none behind, without anyone cleaning up."""
    n = env.name("tk")
    env.start(n, "--rootfs", bbroot, *net_arg(bridge, ATTACKER))
    assert f"kvz_{n}" in nft_tables()
    sup = env.state(n)["supervisor-pid"]
    os.kill(sup, 9)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{sup}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"kvz_{n}" not in nft_tables()
    env.start(n, "--rootfs", bbroot, *net_arg(bridge, ATTACKER))
    env.exec(n, "ping", "-c", "1", "-W", "2", HOST)
    env.stop(n)
    assert f"kvz_{n}" not in nft_tables()


def test_stale_table_replaced(env, bbroot, bridge):
    """A kvz_NAME table that no process owns (made by hand, or by an older
    kvz-ct) is replaced when NAME starts."""
    n = env.name("st")
    # It drops what goes to this test's host address (only that: other
    # tests run on this host).
    subprocess.run(["nft", "-f", "-"], check=True, text=True, input=(
        f"table bridge kvz_{n} {{ chain c {{ type filter hook prerouting priority -300; policy accept;\n"
        f"  ip daddr {HOST} drop; arp daddr ip {HOST} drop; }}; }}\n"))
    try:
        env.start(n, "--rootfs", bbroot, *net_arg(bridge, ATTACKER))
        env.exec(n, "ping", "-c", "1", "-W", "2", HOST)
        env.stop(n)
    finally:
        subprocess.run(["nft", "delete", "table", "bridge", f"kvz_{n}"], capture_output=True)
    assert f"kvz_{n}" not in nft_tables()


def test_no_network_no_table(env, bbroot):
    n = env.name("nn")
    env.start(n, "--rootfs", bbroot)
    assert env.state(n)["nft-table"] is None
    assert f"kvz_{n}" not in nft_tables()
    env.stop(n)
