"""``perfplus daemon ...``: run the per-node migration daemon, make its key, ask it things."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from types import FrameType

import click

from perfplus_agent.adapters.migration_daemon import migrate_via_daemon
from perfplus_agent.agent.uris import daemon_address, remote_uri
from perfplus_agent.daemon.client import DEFAULT_PORT, request
from perfplus_agent.daemon.keys import DEFAULT_KEY_FILE, generate_key_file, load_key
from perfplus_agent.daemon.protocol import FILTER_MODES
from perfplus_agent.daemon.server import DaemonServer, ServerConfig
from perfplus_agent.daemon.sockets import parse_address
from perfplus_agent.errors import UsageError

__all__ = ["daemon"]

key_file_option = click.option(
    "--key-file", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_KEY_FILE,
    show_default=True, help="The cluster key (the same file on every node).")


def _port_range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    if not (sep and lo.isdigit() and hi.isdigit() and 1024 <= int(lo) <= int(hi) < 65536):
        raise UsageError(f"bad --port-range {text!r}: expected LOW-HIGH, e.g. 49700-49799")
    return int(lo), int(hi)


@click.group(invoke_without_command=True)
@click.option("--listen", default=f"0.0.0.0:{DEFAULT_PORT}", show_default=True,
              help="Address and port of the daemon (control and data).")
@key_file_option
@click.option("--port-range", default="49700-49799", show_default=True,
              help="Local ports for migration proxies (must be free on every node).")
@click.option("--libvirt-uri", default="qemu:///system", show_default=True,
              help="The local libvirt whose domains this daemon migrates.")
@click.option("--max-migrations", default=4, show_default=True,
              help="Concurrent outgoing (and, separately, incoming) migrations.")
@click.pass_context
def daemon(ctx: click.Context, listen: str, key_file: Path, port_range: str, *,
           libvirt_uri: str, max_migrations: int) -> None:
    """The per-node Perf+ migration daemon (runs in the foreground; see docs/daemon.md)."""
    if ctx.invoked_subcommand is not None:
        return
    config = ServerConfig(listen=parse_address(listen, DEFAULT_PORT),
                          port_range=_port_range(port_range), libvirt_uri=libvirt_uri,
                          max_migrations=max_migrations)
    server = DaemonServer(load_key(key_file), config)
    daemon_log = logging.getLogger("perfplus_agent.daemon")
    if daemon_log.getEffectiveLevel() > logging.INFO:
        daemon_log.setLevel(logging.INFO)  # a daemon says what it does (journal)
    server.start()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(f"perfplus daemon listening on {listen}", err=True)
    server.serve_forever()


@daemon.command()
@key_file_option
@click.option("--force", is_flag=True, help="Replace an existing key (every node needs the "
                                            "new one).")
def keygen(key_file: Path, force: bool) -> None:
    """Create a new random cluster key (mode 0600); copy it to every node."""
    click.echo(f"wrote {generate_key_file(key_file, overwrite=force)}")


@daemon.command()
@click.argument("address")
@key_file_option
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait.")
def ping(address: str, key_file: Path, timeout: float) -> None:
    """Ask the daemon at ADDRESS (HOST[:PORT]) whether it is there."""
    click.echo(json.dumps(request(address, load_key(key_file), {"op": "ping"}, timeout)))


@daemon.command()
@click.argument("domain")
@click.option("--from", "source", required=True, help="The node that runs DOMAIN.")
@click.option("--to", "dest", required=True, help="The node to move it to.")
@key_file_option
@click.option("--suffix", default="", show_default=True,
              help="Appended to node names on the migration network (e.g. -mig).")
@click.option("--transport", default="tcp", show_default=True,
              help="libvirt transport from the source's libvirt to the destination's.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, help="The daemons' port.")
@click.option("--filter", "filter_mode", type=click.Choice(FILTER_MODES), default="perfplus",
              show_default=True, help="Drop unchanged pages, only count them, or carry as is.")
@click.option("--channels", default=0, show_default=True, help="multifd channels (0: none).")
@click.option("--bandwidth", default=0, show_default=True, help="MiB/s limit (0: none).")
@click.option("--xbzrle-cache", default=0, show_default=True,
              help="MiB: use QEMU's XBZRLE with this cache (for comparisons; 0: off).")
@click.option("--stop-copy-after", default=0, show_default=True,
              help="Force stop-and-copy after this many passes (the paper's method; 0: "
                   "QEMU's own convergence).")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds the migration may "
              "take before it is aborted (the guest stays on the source).")
def migrate(domain: str, *, source: str, dest: str, key_file: Path, suffix: str, transport: str,
            port: int, filter_mode: str, channels: int, bandwidth: int, xbzrle_cache: int,
            stop_copy_after: int, timeout: float) -> None:
    """Live-migrate DOMAIN from one node to another through their daemons; print the
    source daemon's answer (timings, libvirt's figures, the filter's) as JSON."""
    uri = remote_uri(dest, hypervisor=None, transport=transport, user="", suffix=suffix,
                     remoteuri=None)
    done = migrate_via_daemon(
        daemon_address(source, suffix, port), key_file, domain=domain,
        dest_node=dest, dest_address=daemon_address(dest, suffix, port),
        dest_uri=uri, timeout_s=timeout, bandwidth_mib=bandwidth, channels=channels,
        filter_mode=filter_mode, xbzrle_cache_mib=xbzrle_cache,
        stop_copy_after=stop_copy_after)
    click.echo(json.dumps(done.answer))
