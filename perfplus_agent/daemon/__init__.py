"""The per-node Perf+ migration daemon: authenticated control requests, an encrypted relay of
QEMU's migration stream between nodes, and libvirt migrations routed through it.

See docs/daemon.md. Modules: ``keys`` (cluster key file), ``handshake`` (mutual
authentication), ``secure_channel`` (encrypted frames), ``protocol`` (control messages),
``transform`` (the stream-filter hook), ``relay`` (data plane), ``libvirt_migrate`` (the
libvirt call), ``server`` and ``client``.
"""
