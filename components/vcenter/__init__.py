"""vCenter through pyvmomi: the session and the preflight checks run before any resource."""
