"""First boot carries no secret: the user-data (the VM's guestinfo) holds every non-secret
bundle file, the operator's keys and the node's one-time host key, and nothing of the secret
files, the shared private host keys, the keyring or the auth_pass; it starts no service."""

from __future__ import annotations

import base64

import pytest
import yaml

from components.bundle import PATHS, Secrets, hostkeys, render_cluster
from components.bundle.secrets import PLACEHOLDER_ONE_TIME_COMMENT
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
    one_time = {n.name: hostkeys.one_time(f"root@{n.name} one-time") for n in s.nodes}
    secrets = Secrets.resolve(
        s, hostkeys.generate("root@t"), vrrp_auth_pass=AUTH, one_time_keys=one_time
    )
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
        }
        # the one private key in it: the node's own one-time key, ed25519 only
        assert doc["ssh_keys"] == {
            "ed25519_private": one_time[name].private,
            "ed25519_public": one_time[name].public + "\n",
        }
        assert doc["ssh_deletekeys"] is True


def test_first_boot_starts_no_service() -> None:
    s = stack_settings("lab")
    for bundle in render_cluster(s, Secrets.resolve(s), AUTHORIZED).values():
        runcmd = yaml.safe_load(bundle.user_data)["runcmd"]
        starts = [c for c in runcmd if isinstance(c, list) and c[:1] == ["systemctl"]]
        assert starts == [["systemctl", "daemon-reload"]]
        assert not any("keepalived" in str(c) or "rbd-" in str(c) for c in runcmd[-2:])


def test_without_a_one_time_key_a_public_placeholder_is_rendered() -> None:
    s = stack_settings("lab")
    a, b = Secrets.resolve(s), Secrets.resolve(s)
    assert a.one_time_key("repo1") == b.one_time_key("repo1")  # deterministic
    assert a.one_time_key("repo1") != a.one_time_key("repo2")
    assert a.one_time_key("repo1").comment == PLACEHOLDER_ONE_TIME_COMMENT
    real = hostkeys.one_time("c")
    assert Secrets.resolve(s, one_time_keys={"repo1": real}).one_time_key("repo1") == real
