"""Where things live on a node: every path and unit name, spelled once.

Templates read this table too (``paths`` in every Jinja context), as do the converge, the
status probe and cloud-init, so a rename here reaches every file that names the path.
Imports nothing of the project.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NodePaths:
    """Paths and unit names on a repo node."""

    notify_script: str = "/usr/local/bin/keepalivednotify.sh"
    """keepalived's notify script: mounts on MASTER, releases otherwise."""
    sshd_check: str = "/usr/local/bin/repo-cluster-chk-sshd"
    """keepalived's sshd check: does sshd answer on the node's address?"""
    volume_check: str = "/usr/local/bin/repo-cluster-chk-volume"
    """keepalived's volume check: a MASTER without the volume mounted fails it."""
    notify_state_dir: str = "/run/keepalivednotify"
    """The notify script's lock and state journal (tmpfs: gone at boot)."""
    keepalived_conf: str = "/etc/keepalived/keepalived.conf"
    rank_conf: str = "/etc/keepalived/repo-cluster-rank.conf"
    """The priorities the notify script's rank reads; brought by the converge, never the
    first boot, as keepalived.conf: a priority change touches no VM."""
    keepalived_unit: str = "keepalived.service"
    sysctl_conf: str = "/etc/sysctl.d/90-repo-cluster.conf"
    ceph_conf: str = "/etc/ceph/ceph.conf"
    ssh_dir: str = "/etc/ssh"
    unit_dir: str = "/etc/systemd/system"
    pending_dir: str = "/var/lib/repo-cluster/pending"
    """The converge's reload markers: one empty file per reload owed to a file it wrote."""
    publish_host_key: str = "/usr/local/bin/repo-cluster-publish-host-key"
    """Publishes the node's ed25519 host public key in its guestinfo (VMware Tools' RPC)."""
    publish_host_key_unit: str = "repo-cluster-publish-host-key.service"
    """Runs :attr:`publish_host_key` at every boot, once sshd's keys exist."""
    host_key_guestinfo: str = "guestinfo.repo-cluster.ssh-host-key"
    """The guestinfo key the node publishes its host public key under (read over the vSphere
    API by the converge: components/vcenter/published.py)."""
    vrrp_state_guestinfo: str = "guestinfo.repo-cluster.vrrp-state"
    """Where the notify script publishes keepalived's latest state (the preflight reads it)."""

    @property
    def notify_journal(self) -> str:
        """One ``STATE PID`` line per notify call, newest last."""
        return f"{self.notify_state_dir}/states"

    @property
    def keepalived_dropin(self) -> str:
        """Drop-in for the packaged unit: needs the rbd unit, releases the volume on stop."""
        return f"{self.unit_dir}/{self.keepalived_unit}.d/10-repo-cluster.conf"

    @property
    def check_scripts(self) -> tuple[str, ...]:
        """The scripts keepalived.conf names in vrrp_script blocks."""
        return (self.sshd_check, self.volume_check)

    @property
    def rank(self) -> str:
        """The rank a MASTER advertises, when above its priority (the notify script's)."""
        return f"{self.notify_state_dir}/rank"

    def rank_bit(self, weight: int) -> str:
        """Present while the MASTER's rank has the bit of ``weight``: its vrrp_script
        (``test -e``) then adds ``weight`` to the node's priority."""
        return f"{self.notify_state_dir}/rank.{weight}"

    def host_key(self, key_type: str) -> str:
        """The private host key of ``key_type`` (rsa, ecdsa, ed25519); ``.pub`` beside it."""
        return f"{self.ssh_dir}/ssh_host_{key_type}_key"

    def is_host_key(self, path: str) -> bool:
        return path.startswith(f"{self.ssh_dir}/ssh_host_")

    def is_host_public_key(self, path: str) -> bool:
        return self.is_host_key(path) and path.endswith(".pub")

    def ceph_keyring(self, ceph_user: str) -> str:
        return f"/etc/ceph/ceph.client.{ceph_user}.keyring"

    def rbd_device(self, rbd_pool: str, rbd_image: str) -> str:
        """The mapped image's block device: the symlink udev makes for a mapped RBD image
        (ceph-common's 50-rbd.rules), which the lab's rbd stand-in makes too. Read from the
        symlink, never from the device: a node cut off from Ceph hangs on any read of it."""
        return f"/dev/rbd/{rbd_pool}/{rbd_image}"

    def rbd_unit(self, rbd_image: str) -> str:
        """The unit that maps the image (no mount: only the MASTER mounts)."""
        return f"rbd-{rbd_image}.service"

    def unit_file(self, unit: str) -> str:
        return f"{self.unit_dir}/{unit}"


PATHS = NodePaths()
