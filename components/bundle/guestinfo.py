"""A node's guestinfo: the ``extraConfig`` keys its VM carries for cloud-init's VMware datasource.

One function, used by RepoNode (``pulumi up``) and by the lab (which makes the VMs itself when
the vSphere plugin is missing), so both give a VM the same bytes.
"""

from __future__ import annotations

import base64
import gzip

ENCODING = "gzip+base64"
STACK_MARKER = "repo-cluster.stack"
"""extraConfig key every VM of ours carries: ``<project>/<stack>`` (the preflight, the lab)."""


def stack_marker(project: str, stack: str) -> str:
    """The value of :data:`STACK_MARKER` on the VMs of ``stack`` of ``project``."""
    return f"{project}/{stack}"


def encode(text: str) -> str:
    """gzip (mtime 0: the same text always gives the same bytes) then base64."""
    return base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode()


def guestinfo(user_data: str, meta_data: str, stack_id: str) -> dict[str, str]:
    """The extraConfig of a node's VM: its cloud-init documents and the stack marker."""
    return {
        "guestinfo.userdata": encode(user_data),
        "guestinfo.userdata.encoding": ENCODING,
        "guestinfo.metadata": encode(meta_data),
        "guestinfo.metadata.encoding": ENCODING,
        STACK_MARKER: stack_id,
    }
