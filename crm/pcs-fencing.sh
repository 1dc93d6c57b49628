#!/bin/sh
# The fencing of crmsh-fencing.sh, configured with pcs.
# Environment: DEVICE (default fence-nodes), FENCE_AGENT, FENCE_PARAMS (pcs options,
# e.g. "ip=10.0.0.5 username=admin ..."), NODES.
set -eu
: "${FENCE_AGENT:?set FENCE_AGENT}" "${NODES:?set NODES}"
pcs stonith create "${DEVICE:-fence-nodes}" "$FENCE_AGENT" \
    ${FENCE_PARAMS:-} pcmk_host_list="$NODES" \
    op monitor interval=60s
pcs property set stonith-enabled=true
