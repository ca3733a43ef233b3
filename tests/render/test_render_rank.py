"""The notify script's rank, run for real as in test_render_notify (its Ceph doubles, an XFS on
a loop device): a MASTER that fenced its peers advertises a priority above every peer's record,
recorded in Ceph before it is advertised and dropped only after it no longer is, and lowered as
soon as the peers' records allow. keepalived itself reads the bits (rank_<weight> scripts): the
lab's drill shows a stale MASTER yielding to them (master-stunned-long, hung-master)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.render.test_render_notify import Notify, check, namespaces, notify, wait_for

pytestmark = pytest.mark.render
__all__ = ["namespaces", "notify"]  # the fixtures, shared with test_render_notify

OBJECT = "repo-cluster.rank.veeamrepo"


def bits(n: Notify) -> list[int]:
    """The rank bits set (their weights): what keepalived adds to repo1's priority, 101."""
    return sorted(int(p.name.split(".")[1]) for p in n.state_dir.glob("rank.[0-9]*"))


def records(n: Notify) -> list[str]:
    path = n.doubles / "records"
    return path.read_text().splitlines() if path.exists() else []


def stored(n: Notify, node: str) -> str | None:
    path = n.doubles / "omap" / OBJECT / node
    return path.read_text() if path.exists() else None


def store(n: Notify, node: str, value: int | None) -> None:
    path = n.doubles / "omap" / OBJECT / node
    if value is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(value))


def test_a_master_above_every_peer_advertises_its_own_priority(notify: Notify) -> None:
    """repo1 (101) over repo2 (100, no record): its own priority is enough. Nothing recorded,
    no bit set; the first promotion since the boot removes any record of its own (none here),
    and the release then has nothing to drop."""
    check(notify.call("MASTER"))
    assert notify.mounted()
    assert bits(notify) == [] and records(notify) == []
    assert notify.verbs().count("rados getomapval") == 1  # repo2's record was asked for
    assert notify.verbs().count("rados rmomapkey") == 1  # none there: no such object
    assert (notify.state_dir / "rank.clean").exists()
    before = len(notify.calls())
    check(notify.call("BACKUP"))
    assert not [v for v in notify.verbs(before) if v.startswith("rados")]


def test_a_record_left_by_a_crash_is_dropped_after_the_boot(notify: Notify) -> None:
    """repo1 crashed as MASTER at 102 (its record stays in Ceph) and booted again: its state
    (tmpfs) knows nothing of it, and its first release drops it, once; so does a first
    promotion. Peers then see repo1's own priority again."""
    store(notify, "repo1", 102)
    check(notify.call("BACKUP"))
    assert stored(notify, "repo1") is None and records(notify) == ["rm repo1 bits:"]
    check(notify.call("BACKUP"))
    assert records(notify) == ["rm repo1 bits:"]  # once a boot
    for f in notify.state_dir.iterdir():  # a reboot: tmpfs is empty
        f.unlink()
    store(notify, "repo1", 103)
    check(notify.call("MASTER"))
    assert notify.mounted() and stored(notify, "repo1") is None and bits(notify) == []


def test_a_master_outranks_a_stale_peer_recording_before_advertising(notify: Notify) -> None:
    """repo2 was MASTER at 102 when it froze (its record says so): repo1 takes 103, records
    it in Ceph while no bit is set, then sets the bits of 103 - 101 = 2. Demoted, it clears
    its bits first and drops its record once released."""
    store(notify, "repo2", 102)
    check(notify.call("MASTER"))
    assert notify.mounted()
    assert stored(notify, "repo1") == "103"
    assert records(notify) == ["set repo1 103 bits:"]  # recorded before any bit
    assert bits(notify) == [2]
    assert (notify.state_dir / "rank").read_text().strip() == "103"
    assert "rank: advertising priority 103" in notify.log()
    check(notify.call("BACKUP"))
    assert notify.source() is None and bits(notify) == []
    assert stored(notify, "repo1") is None
    assert records(notify)[-1] == "rm repo1 bits:"  # dropped after the bits were cleared
    assert not (notify.state_dir / "rank").exists()


def test_the_rank_stops_at_the_ceiling(notify: Notify) -> None:
    """A record at the ceiling itself (103 for two nodes at 101 and 100): repo1 cannot go
    above it, takes the ceiling and says that a stale peer may take the VIP back."""
    store(notify, "repo2", 103)
    check(notify.call("MASTER"))
    assert notify.mounted() and stored(notify, "repo1") == "103" and bits(notify) == [2]
    assert "above the ceiling 103" in notify.log()


def test_no_rank_without_ceph_but_the_promotion_stands(notify: Notify) -> None:
    """rados gets no answer (the fence did): the MASTER mounts, advertises nothing above its
    own priority, and says why."""
    store(notify, "repo2", 102)
    notify.mark("rados-down")
    check(notify.call("MASTER"))
    assert notify.mounted() and bits(notify) == [] and stored(notify, "repo1") is None
    assert "rank: cannot read repo2's rank in Ceph" in notify.log()
    assert "rank: not raised" in notify.log()


def test_the_rank_reads_the_priorities_from_its_own_file(notify: Notify) -> None:
    """The priorities come from the rank config the converge brings (never the first boot):
    as rendered, it is valid bash; without it the promotion still stands, with no rank."""
    conf = (notify.script.parent / "rank.conf").read_text()
    assert "PRIORITY=101\n" in conf and "PEERS=(repo2:100)\n" in conf
    assert "RANK_WEIGHTS=(1 2)\n" in conf and "RANK_FLOOR=101\n" in conf
    assert "RANK_CEILING=103\n" in conf
    store(notify, "repo2", 102)
    (notify.script.parent / "rank.conf").unlink()
    check(notify.call("MASTER"))
    assert notify.mounted() and bits(notify) == [] and stored(notify, "repo1") is None
    assert "rank: no priorities in" in notify.log() and "rank: not raised" in notify.log()


def test_a_record_that_cannot_be_dropped_is_retried_after_the_release(notify: Notify) -> None:
    store(notify, "repo2", 102)
    check(notify.call("MASTER"))
    assert stored(notify, "repo1") == "103"
    notify.mark("rados-down")
    r = notify.call("FAULT")
    assert r.returncode == 1
    assert notify.source() is None and bits(notify) == []  # released, no bit
    assert stored(notify, "repo1") == "103"
    notify.mark("rados-down", present=False)
    wait_for(lambda: stored(notify, "repo1") is None, "the record dropped by the retrier")
    wait_for(lambda: not notify.retriers(), "the retrier done")


def test_a_master_lowers_its_rank_once_the_stale_peer_dropped_its_record(
    notify: Notify, tmp_path: Path
) -> None:
    """repo1 took 103 over repo2's 102. Once repo2's record is gone (it came back and
    released), repo1 lowers its bits to its floor (101: no bit), then, 2 s later, drops
    its record: the advertised rank first, never above the record."""
    text = notify.script.read_text()
    assert "readonly RANK_PAUSE=10" in text
    notify.script.write_text(text.replace("readonly RANK_PAUSE=10", "readonly RANK_PAUSE=1"))
    store(notify, "repo2", 102)
    check(notify.call("MASTER"))
    assert bits(notify) == [2] and stored(notify, "repo1") == "103"
    store(notify, "repo2", None)
    wait_for(lambda: len(records(notify)) == 2, "the record dropped", timeout=15)
    assert bits(notify) == [] and stored(notify, "repo1") is None
    assert records(notify) == ["set repo1 103 bits:", "rm repo1 bits:"]
    assert "the peers' records allow 101" in notify.log()
    wait_for(lambda: not notify.retriers(), "the settling loop ended", timeout=5)
    assert notify.mounted()
