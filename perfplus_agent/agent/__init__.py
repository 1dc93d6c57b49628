"""The VirtualDomain agent's decisions: what each OCF action does, given the parameters,
the local hypervisor, the peers and the cluster."""
