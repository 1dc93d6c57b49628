#!/bin/sh
# A VM under Pacemaker with ocf:perfplus:VirtualDomain, configured with crmsh.
#
# Environment:
#   VM                the resource name (use the domain's name)
#   CONFIG            path of the domain XML, identical on every node
#   MIGRATION_SUFFIX  appended to a node name to reach it over the migration network
#                     (default -mig: node1 -> node1-mig); empty to use the node names
#   TRANSPORT         libvirt transport between nodes (default tcp; ssh or tls in production)
#   PREFER            optional: a node the VM prefers (score 50, below the stickiness of 100,
#                     so a running VM is not moved back just because that node returned)
#   APART_FROM        optional: another VM resource this one should not share a node with
#                     (score -100: kept apart when possible, together when it must)
#   LIBVIRTD          optional: the cloned resource that runs libvirtd, when Pacemaker manages
#                     it (e.g. a clone of systemd:libvirtd): the VM starts only after it, on a
#                     node where it runs, and stops before it
#
# allow-migrate=true turns a move into migrate_to + migrate_from (live); the op timeouts are
# the budgets the agent derives its own deadlines from (it aborts a migration before its
# timeout, leaving the guest running on the source).
set -eu
: "${VM:?set VM}" "${CONFIG:?set CONFIG}"
crm configure rsc_defaults resource-stickiness=100
crm configure property migration-limit=2
crm configure primitive "$VM" ocf:perfplus:VirtualDomain \
    params config="$CONFIG" hypervisor=qemu:///system \
        migration_transport="${TRANSPORT:-tcp}" \
        migration_network_suffix="${MIGRATION_SUFFIX--mig}" \
    meta allow-migrate=true \
    op start timeout=90s op stop timeout=90s \
    op monitor interval=10s timeout=30s \
    op migrate_to timeout=120s op migrate_from timeout=60s
if [ -n "${PREFER:-}" ]; then
    crm configure location "$VM-prefers-$PREFER" "$VM" 50: "$PREFER"
fi
if [ -n "${APART_FROM:-}" ]; then
    crm configure colocation "$VM-apart-from-$APART_FROM" -100: "$VM" "$APART_FROM"
fi
if [ -n "${LIBVIRTD:-}" ]; then
    crm configure order "$VM-after-libvirtd" Mandatory: "$LIBVIRTD" "$VM"
    crm configure colocation "$VM-with-libvirtd" inf: "$VM" "$LIBVIRTD"
fi
