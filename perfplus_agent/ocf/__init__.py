"""OCF Resource Agent API 1.1 plumbing: exit codes, environment, parameters, meta-data,
logging and the action runner. Nothing here knows about libvirt."""
