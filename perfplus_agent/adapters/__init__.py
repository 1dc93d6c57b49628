"""Adapters to the outside world the agent decides about: libvirt, QEMU processes, the
cluster stack. Every call into them is bounded in time."""
