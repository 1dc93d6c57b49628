"""perfplus-agent: Pacemaker high availability for QEMU/KVM guests with live migration."""

__version__ = "0.1.0"
