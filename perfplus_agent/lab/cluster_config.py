"""Files a cluster lab needs before its hosts start: corosync's configuration and key, a seed
CIB (fast DC election, fencing on, the lab's fence device), private Pacemaker directories,
and the agents each host sees in its OCF and fence-agent directories."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import sys
from pathlib import Path

from perfplus_agent.lab.layout import HostLayout, LabLayout
from perfplus_agent.ocf.install import install_agents
from perfplus_agent.proc import run

__all__ = ["FENCE_AGENT", "FENCE_DEVICE", "corosync_conf", "prepare_cluster"]

FENCE_AGENT = "fence_perfplus_lab"
FENCE_DEVICE = "fence-lab"
TOKEN_MS = 1000


def corosync_conf(lab: LabLayout, token_ms: int = TOKEN_MS) -> str:
    """corosync.conf: knet over the LAN, encrypted, votequorum."""
    nodes = "\n".join(
        f"    node {{\n        ring0_addr: {h.lan_addr}\n        name: {h.name}\n"
        f"        nodeid: {h.index}\n    }}" for h in lab.all_hosts())
    two_node = "\n    two_node: 1" if lab.hosts == 2 else ""
    return f"""# perfplus lab {lab.name}
totem {{
    version: 2
    cluster_name: {lab.name}
    transport: knet
    crypto_cipher: aes256
    crypto_hash: sha256
    token: {token_ms}
}}
nodelist {{
{nodes}
}}
quorum {{
    provider: corosync_votequorum{two_node}
}}
logging {{
    to_logfile: yes
    logfile: /var/log/corosync/corosync.log
    to_syslog: no
    to_stderr: no
    timestamp: on
}}
"""


def _seed_cib(lab: LabLayout, path: Path) -> None:
    """An empty CIB with the settings a lab needs from the first second."""
    path.write_text(run(["cibadmin", "--empty"]).stdout)
    env = {**os.environ, "CIB_file": str(path)}
    # cluster-delay: how long past an action's timeout the DC waits for its result from a
    # node (60 s by default, for real networks; the lab's is a bridge on one machine).
    for name, value in (("dc-deadtime", "2s"), ("cluster-delay", "10s"),
                        ("stonith-enabled", "true"),
                        ("cluster-name", lab.name)):
        run(["crm_attribute", "--type", "crm_config", "--name", name, "--update", value],
            env=env)
    hosts = " ".join(h.name for h in lab.all_hosts())
    device = (
        f'<primitive id="{FENCE_DEVICE}" class="stonith" type="{FENCE_AGENT}">'
        f'<instance_attributes id="{FENCE_DEVICE}-ia">'
        f'<nvpair id="{FENCE_DEVICE}-socket" name="socket" value="{lab.power_socket}"/>'
        f'<nvpair id="{FENCE_DEVICE}-hosts" name="pcmk_host_list" value="{hosts}"/>'
        f'</instance_attributes>'
        f'<operations><op id="{FENCE_DEVICE}-monitor" name="monitor" interval="60s"/>'
        f'</operations></primitive>'
    )
    run(["cibadmin", "--create", "--scope", "resources", "--xml-text", device], env=env)


def _own(path: Path, mode: int) -> None:
    os.chown(path, pwd.getpwnam("hacluster").pw_uid, grp.getgrnam("haclient").gr_gid)
    path.chmod(mode)


def _prepare_host(host: HostLayout, conf: str, authkey: Path, cib: Path) -> None:
    etc = host.path("/etc/corosync")
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "corosync.conf").write_text(conf)
    shutil.copy(authkey, etc / "authkey")
    (etc / "authkey").chmod(0o400)
    host.path("/etc/pacemaker").mkdir(parents=True, exist_ok=True)
    host.path("/var/lib/corosync").mkdir(parents=True, exist_ok=True)
    lib = host.path("/var/lib/pacemaker")
    for sub in ("", "cib", "pengine", "blackbox", "cores"):
        (lib / sub).mkdir(parents=True, exist_ok=True)
        _own(lib / sub, 0o750)
    shutil.copy(cib, lib / "cib" / "cib.xml")
    _own(lib / "cib" / "cib.xml", 0o600)
    for log_dir in ("/var/log/pacemaker", "/var/log/corosync", "/var/log/crmsh"):
        host.path(log_dir).mkdir(parents=True, exist_ok=True)


def _install_fence_agent(lab: LabLayout) -> None:
    sbin = lab.state_dir / "sbin"
    sbin.mkdir(parents=True, exist_ok=True)
    script = sbin / FENCE_AGENT
    script.write_text(f"#!{sys.executable}\n"
                      f'"""The lab\'s fence agent (see perfplus_agent/lab/fence_agent.py)."""\n'
                      "from perfplus_agent.lab.fence_agent import main\n\nmain()\n")
    script.chmod(0o755)


def prepare_cluster(lab: LabLayout) -> None:
    """Write everything the hosts' corosync and Pacemaker read at start."""
    authkey = lab.state_dir / "corosync-authkey"
    run(["corosync-keygen", "-k", str(authkey)], timeout=30)
    cib = lab.state_dir / "cib-seed.xml"
    _seed_cib(lab, cib)
    conf = corosync_conf(lab)
    for host in lab.all_hosts():
        _prepare_host(host, conf, authkey, cib)
    install_agents(str(lab.state_dir / "ocf"))
    _install_fence_agent(lab)
