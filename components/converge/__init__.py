"""Making nodes match their bundles over SSH, and reading what they report.

``ssh`` (connections with strict host keys), ``facts`` (read-only probes), ``operations``
(pure: bundle + facts -> commands), ``node`` (one node's converge), ``fleet`` (every node,
start order, the stack's converge), ``status`` (VRRP state, VIP, mount). Imports only
downward: bundle and config.
"""
