"""The lab's ceph.conf: one monitor and one memstore OSD on the bridge's address, cephx.

The monitor's default blocklist lifetime is shortened (one hour on a real monitor) so that the
drill can outlast it (master-stunned-long): the fence must not depend on it.
"""

from __future__ import annotations

from pathlib import Path

from components.lab.plan import Lab

IMAGE_MIB = 300  # the smallest XFS that xfsprogs 6 makes
LAB_BLOCKLIST_DEFAULT = 60


def conf_text(lab: Lab, fsid: str, h: Path, r: Path, monitor: str) -> str:
    """ceph.conf of the lab's Ceph: ``h`` its files, ``r`` its pid files and sockets."""
    net = lab.gateway.network
    return f"""\
# The lab's Ceph (components/lab/ceph.py): one monitor, one memstore OSD, on {lab.bridge}.
[global]
fsid = {fsid}
mon_host = {monitor}
public_network = {net}
ms_bind_ipv6 = false
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
auth_allow_insecure_global_id_reclaim = false
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 1
# the default blocklist lifetime, one hour on a real monitor: the drill outlasts this one
mon_osd_blocklist_default_expire = {LAB_BLOCKLIST_DEFAULT}
osd_objectstore = memstore
memstore_device_bytes = {2 * IMAGE_MIB * 1024 * 1024}
osd_crush_chooseleaf_type = 0
[mon]
mon_data = {h}/mon
keyring = {h}/mon.keyring
pid_file = {r}/mon.pid
admin_socket = {r}/mon.asok
log_file = {h}/mon.log
[osd]
osd_data = {h}/osd
keyring = {h}/osd.keyring
pid_file = {r}/osd.pid
admin_socket = {r}/osd.asok
log_file = {h}/osd.log
[client]
admin_socket =
log_file =
"""
