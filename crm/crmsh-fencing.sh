#!/bin/sh
# Fencing for a VM cluster, configured with crmsh: one fence device that can power off every
# node, and stonith-enabled=true. Without fencing, Pacemaker cannot know that a node which
# stopped answering runs nothing any more, and must not start its VMs elsewhere.
#
# Environment:
#   DEVICE        the fence resource's name (default fence-nodes)
#   FENCE_AGENT   the fence agent (fence_ipmilan, fence_redfish, fence_xvm, ...)
#   FENCE_PARAMS  its parameters, as crmsh params (e.g. "ip=10.0.0.5 username=admin ...")
#   NODES         the nodes it fences, space separated (pcmk_host_list)
set -eu
: "${FENCE_AGENT:?set FENCE_AGENT}" "${NODES:?set NODES}"
crm configure primitive "${DEVICE:-fence-nodes}" "stonith:$FENCE_AGENT" \
    params ${FENCE_PARAMS:-} pcmk_host_list="$NODES" \
    op monitor interval=60s
crm configure property stonith-enabled=true
