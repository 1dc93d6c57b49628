"""The lab: simulated hosts on one machine, each a set of Linux namespaces running its own
libvirtd (and, for cluster work, corosync and Pacemaker), with tiny QEMU guests.

It is the project's test bed and its embedded default (``perfplus lab demo``). The lab uses
the product's modules; nothing in the product imports the lab.
"""
