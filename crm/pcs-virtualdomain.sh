#!/bin/sh
# The same VM resource as crmsh-virtualdomain.sh, configured with pcs.
# Environment: VM, CONFIG, MIGRATION_SUFFIX (default -mig), TRANSPORT (default tcp), and the
# optional PREFER (a node, score 50), APART_FROM (another VM, score -100) and LIBVIRTD (the
# cloned resource that runs libvirtd: start after it, only where it runs).
set -eu
: "${VM:?set VM}" "${CONFIG:?set CONFIG}"
pcs resource defaults update resource-stickiness=100
pcs property set migration-limit=2
pcs resource create "$VM" ocf:perfplus:VirtualDomain \
    config="$CONFIG" hypervisor=qemu:///system \
    migration_transport="${TRANSPORT:-tcp}" \
    migration_network_suffix="${MIGRATION_SUFFIX--mig}" \
    meta allow-migrate=true \
    op start timeout=90s op stop timeout=90s \
    op monitor interval=10s timeout=30s \
    op migrate_to timeout=120s op migrate_from timeout=60s
if [ -n "${PREFER:-}" ]; then
    pcs constraint location "$VM" prefers "$PREFER=50"
fi
if [ -n "${APART_FROM:-}" ]; then
    pcs constraint colocation add "$VM" with "$APART_FROM" -100
fi
if [ -n "${LIBVIRTD:-}" ]; then
    pcs constraint order start "$LIBVIRTD" then start "$VM"
    pcs constraint colocation add "$VM" with "$LIBVIRTD" INFINITY
fi
