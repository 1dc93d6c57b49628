"""A real corosync + Pacemaker cluster on the lab, fencing on: the crm/pcs recipes, live
moves through Pacemaker, and the case this agent exists for."""

import contextlib
import os
import signal
import time

import pytest

from perfplus_agent.errors import PerfplusError
from perfplus_agent.lab.cluster_config import FENCE_AGENT
from perfplus_agent.lab.cluster_status import cluster_view, wait_online
from perfplus_agent.lab.guests import Guests
from perfplus_agent.lab.service_probe import ServiceProbe
from tests.conftest import built_lab
from tests.integration.cluster_support import (
    in_node,
    recipe,
    settle,
    vm_config,
    wait_active,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    t0 = time.monotonic()
    with built_lab(f"pc{os.getpid() % 1000}", cluster=True) as lab:
        lab.up_seconds = time.monotonic() - t0
        yield lab


@pytest.fixture
def cguests(cluster):
    g = Guests(cluster)
    yield g
    for name in g.names():
        g.destroy(name)


def moved_live(guests, name):
    """The guest on its new host never booted there: the same guest, moved live."""
    console = guests.console(name)
    lines, _ = console.lines(0)
    assert not any("PERFPLUS-GUEST BOOTED" in ln for ln in lines), "the guest was restarted"
    assert console.command("v", r"^VERIFY") == "VERIFY OK 16384"


def test_cluster_comes_up_fast_with_working_fencing(cluster, cguests):
    assert cluster.up_seconds < 60
    before = cluster.init_pid(cluster.layout.host_named("h3"))
    in_node(cguests, "h1", ["stonith_admin", "--reboot", "h3", "--timeout", "60"])
    deadline = time.monotonic() + 60
    after = before
    while after == before and time.monotonic() < deadline:
        time.sleep(0.5)
        with contextlib.suppress(PerfplusError):  # off until the end of the reboot
            after = cluster.init_pid(cluster.layout.host_named("h3"))
    assert after != before, "fencing did not power-cycle h3"
    wait_online(cluster.init_pid(cluster.layout.host_named("h1")), ["h1", "h2", "h3"], 60)
    settle(cguests)


def test_crmsh_recipe_and_node_standby_move_the_vm_live(cluster, cguests):
    config = vm_config(cguests, "vmc")
    # libvirtd runs outside Pacemaker here: a cloned Dummy stands in for systemd:libvirtd
    in_node(cguests, "h1", ["crm", "configure", "primitive", "libvirtd-stand-in",
                            "ocf:pacemaker:Dummy"])
    in_node(cguests, "h1", ["crm", "configure", "clone", "libvirtd-clone", "libvirtd-stand-in"])
    recipe(cguests, "h1", "crmsh-virtualdomain.sh",
           {"VM": "vmc", "CONFIG": config, "PREFER": "h2", "LIBVIRTD": "libvirtd-clone"})
    src = wait_active(cguests, "vmc", lambda w: len(w) == 1)[0]
    assert src == "h2", "the recipe's location preference was not applied"
    shown = in_node(cguests, "h1", ["crm", "configure", "show", "vmc-after-libvirtd"]).stdout
    assert "libvirtd-clone vmc" in shown
    cguests.wait_booted("vmc", cguests.layout.host_named(src))
    try:
        with ServiceProbe(cguests.layout, cguests.spec("vmc").ip) as probe:
            in_node(cguests, "h1", ["crm", "node", "standby", src])
            dst = wait_active(cguests, "vmc", lambda w: len(w) == 1 and w[0] != src)[0]
            settle(cguests)
            service = probe.stop()
        assert [h.name for h in cguests.locate("vmc")] == [dst]
        assert service.connection_kept, service
        moved_live(cguests, "vmc")
    finally:
        in_node(cguests, "h1", ["crm", "node", "online", src])
        in_node(cguests, "h1", ["crm", "resource", "stop", "vmc"])
        settle(cguests)
        in_node(cguests, "h1", ["crm", "configure", "delete", "vmc"])
        in_node(cguests, "h1", ["crm", "configure", "delete", "--force", "libvirtd-clone"])


def test_pcs_recipe_and_resource_move(cluster, cguests):
    config = vm_config(cguests, "vmp")
    in_node(cguests, "h2", ["pcs", "resource", "create", "pdummy", "ocf:pacemaker:Dummy"])
    neighbour = wait_active(cguests, "pdummy", lambda w: len(w) == 1)[0]
    recipe(cguests, "h2", "pcs-virtualdomain.sh",
           {"VM": "vmp", "CONFIG": config, "APART_FROM": "pdummy"})
    src = wait_active(cguests, "vmp", lambda w: len(w) == 1)[0]
    assert src != neighbour, "the recipe's anti-colocation was not applied"
    cguests.wait_booted("vmp", cguests.layout.host_named(src))
    dst = next(h for h in ("h1", "h2", "h3") if h not in (src, neighbour))
    try:
        in_node(cguests, "h2", ["pcs", "resource", "move", "vmp", dst])
        wait_active(cguests, "vmp", lambda w: w == (dst,))
        settle(cguests)
        assert [h.name for h in cguests.locate("vmp")] == [dst]
        moved_live(cguests, "vmp")
    finally:
        in_node(cguests, "h2", ["pcs", "resource", "disable", "vmp", "--wait=60"])
        in_node(cguests, "h2", ["pcs", "resource", "delete", "vmp"])
        in_node(cguests, "h2", ["pcs", "resource", "delete", "pdummy"])


@pytest.mark.parametrize(("script", "delete"), [
    ("crmsh-fencing.sh", ["crm", "configure", "delete", "--force", "fence-recipe"]),
    ("pcs-fencing.sh", ["pcs", "stonith", "delete", "fence-recipe"]),
], ids=["crmsh", "pcs"])
def test_fencing_recipe_registers_a_working_device(cluster, cguests, script, delete):
    recipe(cguests, "h1", script, {
        "DEVICE": "fence-recipe", "FENCE_AGENT": FENCE_AGENT, "NODES": "h1 h2 h3",
        "FENCE_PARAMS": f"socket={cluster.layout.power_socket}"})
    try:
        wait_active(cguests, "fence-recipe", lambda w: len(w) == 1)
        listed = in_node(cguests, "h2", ["stonith_admin", "--list-registered"]).stdout
        assert "fence-recipe" in listed
        can = in_node(cguests, "h2", ["stonith_admin", "--list", "h3"]).stdout
        assert "fence-recipe" in can, "the device does not say it can fence h3"
    finally:
        in_node(cguests, "h1", delete)
        settle(cguests)


def test_start_elsewhere_of_a_vm_left_running_migrates_it(cluster, cguests):
    """The seed case. The cluster stack leaves a node whose VM keeps running (the resource was
    unmanaged for maintenance); when it is managed again Pacemaker starts it on another node.
    With fencing on, Pacemaker fences the departed node first (test above shows fencing
    works); without fencing, as in the upstream reproduction, the upstream agent boots a
    second copy. This agent finds the running one and migrates it."""
    config = vm_config(cguests, "vms")
    recipe(cguests, "h1", "crmsh-virtualdomain.sh", {"VM": "vms", "CONFIG": config})
    home = wait_active(cguests, "vms", lambda w: len(w) == 1)[0]
    cguests.wait_booted("vms", cguests.layout.host_named(home))
    via = next(h for h in ("h1", "h2", "h3") if h != home)
    in_node(cguests, via, ["crm", "configure", "property", "stonith-enabled=false"])
    try:
        in_node(cguests, via, ["crm", "resource", "unmanage", "vms"])
        settle(cguests, via)
        os.kill(cluster.init_pid(cluster.layout.host_named(home)), signal.SIGHUP)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and home in _online(cguests, via):
            time.sleep(0.5)
        assert home not in _online(cguests, via)
        assert [h.name for h in cguests.locate("vms")] == [home], "the VM must keep running"
        in_node(cguests, via, ["crm", "resource", "manage", "vms"])
        new = wait_active(cguests, "vms", lambda w: len(w) == 1 and w[0] != home, via=via)[0]
        settle(cguests, via)
        assert [h.name for h in cguests.locate("vms")] == [new], "exactly one copy"
        moved_live(cguests, "vms")
        log = cguests.layout.host_named(new).path("/var/log/pacemaker/pacemaker.log")
        assert f"domain vms runs on {home}: live-migrating it here" in log.read_text()
    finally:
        os.kill(cluster.init_pid(cluster.layout.host_named(home)), signal.SIGUSR1)
        in_node(cguests, via, ["crm", "configure", "property", "stonith-enabled=true"])
        in_node(cguests, via, ["crm", "resource", "stop", "vms"])
        settle(cguests, via)
        in_node(cguests, via, ["crm", "configure", "delete", "vms"])


def _online(guests: Guests, via: str) -> tuple[str, ...]:
    view = cluster_view(guests.lab.init_pid(guests.layout.host_named(via)))
    return view.online if view else ()
