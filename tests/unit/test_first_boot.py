"""First boot carries no secret and no key: the user-data (the VM's guestinfo) holds every
non-secret bundle file and the operator's public keys, and nothing of the secret files, no
private key at all (the VM makes its own host key), no keyring, no auth_pass; it starts no
service but the publication of the VM's own host key."""

from __future__ import annotations

import base64

import pytest
import yaml

from components.bundle import PATHS, Secrets, hostkeys, render_cluster
from tests.kit import stack_settings

pytestmark = pytest.mark.unit

AUTHORIZED = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPMVzB2D7bQS3uvvnvTcOb0/+gzrNfCGhOyIXrveXRz t",)
KEYRING = "AQBvaBFZAAAAABAAcUVJcmyBJ2uZ0lA7cHl2AQ=="
AUTH = "Zq9Wx3Kp"


def secret_needles(secrets: Secrets) -> list[str]:
    """Strings none of which may appear in a user-data, raw or base64-encoded."""
    needles = [KEYRING, AUTH, "auth_pass"]
    # the last lines of each private key (its first ones are the same for every key)
    needles += [k.private.splitlines()[-2] for k in secrets.host_keys]
    needles += [k.private.splitlines()[-3] for k in secrets.host_keys]
    return needles


@pytest.mark.parametrize("stack", ["lab", "sim"])
def test_user_data_holds_no_secret_byte(stack) -> None:
    s = stack_settings(stack)
    s = s.__class__(**{**s.__dict__, "ceph_keyring": s.ceph_keyring.__class__(KEYRING)})
    secrets = Secrets.resolve(s, hostkeys.generate("root@t"), vrrp_auth_pass=AUTH)
    assert secrets.ceph_keyring == KEYRING
    for name, bundle in render_cluster(s, secrets, AUTHORIZED).items():
        doc = yaml.safe_load(bundle.user_data)
        blobs = [bundle.user_data, bundle.meta_data]
        blobs += [base64.b64decode(w["content"]).decode() for w in doc["write_files"]]
        for needle in secret_needles(secrets):
            assert not any(needle in b for b in blobs), f"{name}: a secret in the user-data"
        for f in bundle.files:
            if f.secret:
                assert not any(f.content.decode().strip() in b for b in blobs), f.path
        written = {w["path"] for w in doc["write_files"]}
        assert written == {
            f.path for f in bundle.files if not f.secret and not PATHS.is_host_key(f.path)
        } - {PATHS.rank_conf}  # the priorities come with keepalived.conf: see the rank
        # no key at all: the template's are deleted, the VM makes its own ed25519 key
        assert "PRIVATE KEY" not in "".join(blobs)
        assert "ssh_keys" not in doc
        assert doc["ssh_deletekeys"] is True
        assert doc["ssh_genkeytypes"] == ["ed25519"]


def test_first_boot_starts_only_the_host_key_publication() -> None:
    """First thing, the VM publishes the host key it made (the converge waits for it); no
    other unit is enabled or started: keepalived and the rbd unit need the secret files."""
    s = stack_settings("lab")
    for bundle in render_cluster(s, Secrets.resolve(s), AUTHORIZED).values():
        runcmd = yaml.safe_load(bundle.user_data)["runcmd"]
        assert runcmd[:2] == [
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", PATHS.publish_host_key_unit],
        ]
        starts = [c for c in runcmd[2:] if isinstance(c, list) and c[:1] == ["systemctl"]]
        assert starts == [["systemctl", "daemon-reload"]]
        assert not any("keepalived" in str(c) or "rbd-" in str(c) for c in runcmd[-2:])
        written = {w["path"] for w in yaml.safe_load(bundle.user_data)["write_files"]}
        assert {PATHS.publish_host_key, PATHS.unit_file(PATHS.publish_host_key_unit)} <= written
