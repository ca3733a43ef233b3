"""The drill's invariants on hand-made samples: each check fails on the sample that breaks it."""

from __future__ import annotations

import pytest

from components.converge import invariants as inv
from components.converge.probe import Sample
from components.converge.status import NodeStatus

pytestmark = pytest.mark.unit


def node(name: str, state: str, vip: bool = False, mnt: bool = False, fenced: bool = False):
    return NodeStatus(name, "198.18.50.1", state, vip, mnt, fenced=fenced)


def held(t: float, r1: NodeStatus) -> Sample:
    """repo2 holds the VIP and the volume; repo1 is as given."""
    return Sample(t, (r1, node("repo2", "MASTER", vip=True, mnt=True)))


BACK = 5.0


def test_a_quiet_return_keeps_no_move():
    samples = [held(4.0, node("repo1", "FAULT")), held(5.1, node("repo1", "FAULT"))]
    samples.append(held(6.0, node("repo1", "BACKUP")))
    assert inv.no_move(samples, BACK, "repo2", "repo1") == []


def test_a_fenced_leftover_mount_released_after_the_return_is_no_move():
    """Cut off from Ceph, the old master could not finish its unmount; it finishes once the
    storage answers again. That is not taking the volume back."""
    samples = [
        held(4.0, node("repo1", "FAULT", mnt=True, fenced=True)),
        held(5.1, node("repo1", "FAULT", mnt=True, fenced=True)),
        held(6.0, node("repo1", "BACKUP")),
    ]
    assert inv.no_move(samples, BACK, "repo2", "repo1") == []
    assert inv.single_mount(samples) == []


def test_mounting_again_after_the_return_is_a_move():
    samples = [
        held(4.0, node("repo1", "FAULT")),
        held(5.1, node("repo1", "BACKUP", mnt=True, fenced=True)),
        held(6.0, node("repo1", "BACKUP")),
    ]
    (broken,) = inv.no_move(samples, BACK, "repo2", "repo1")
    assert broken.invariant == "S6" and "took the VIP or the mount back" in broken.detail
    assert broken.sample and broken.sample.startswith("t=5.10s")


def test_a_leftover_mount_that_flaps_is_a_move():
    samples = [
        held(4.0, node("repo1", "FAULT", mnt=True, fenced=True)),
        held(5.1, node("repo1", "BACKUP")),
        held(5.5, node("repo1", "BACKUP", mnt=True)),
        held(6.0, node("repo1", "BACKUP")),
    ]
    broken = inv.no_move(samples, BACK, "repo2", "repo1")
    assert [b.sample[:7] for b in broken if b.sample] == ["t=5.50s"]
    # and the unfenced second mount is also a second writer
    assert [b.invariant for b in inv.single_mount(samples)] == ["I1"]


def test_taking_the_vip_is_a_move():
    samples = [held(4.0, node("repo1", "FAULT")), held(5.1, node("repo1", "MASTER", vip=True))]
    samples.append(held(6.0, node("repo1", "BACKUP")))
    broken = inv.no_move(samples, BACK, "repo2", "repo1")
    assert any("took the VIP" in b.detail for b in broken)


def test_a_stale_master_may_hold_the_vip_it_froze_with_only_within_the_grace():
    """Woken from a stun, the old master still has the VIP until it hears the survivor's
    advert: within ``grace`` of its return that is not a move; after it, it is. Its fenced
    mount, kept from before, never is."""
    frozen = node("repo1", "MASTER", vip=True, mnt=True, fenced=True)
    samples = [held(4.0, frozen), held(5.5, frozen), held(9.0, node("repo1", "BACKUP"))]
    assert inv.no_move(samples, BACK, "repo2", "repo1", grace=3.0) == []
    (broken,) = inv.no_move(samples, BACK, "repo2", "repo1")
    assert "took the VIP" in broken.detail and broken.sample.startswith("t=5.50s")
    samples.insert(2, held(8.5, frozen))
    (broken,) = inv.no_move(samples, BACK, "repo2", "repo1", grace=3.0)
    assert broken.sample.startswith("t=8.50s")


def test_the_survivor_yielding_to_a_woken_master_is_a_move():
    woke = Sample(5.5, (node("repo1", "MASTER", vip=True), node("repo2", "BACKUP")))
    samples = [held(4.0, node("repo1", "MASTER", vip=True, mnt=True, fenced=True)), woke]
    samples.append(held(9.0, node("repo1", "BACKUP")))
    broken = inv.no_move(samples, BACK, "repo2", "repo1", grace=3.0)
    assert [b.detail for b in broken] == ["repo2 lost the VIP or the mount"]


def test_the_returner_must_end_backup_and_unmounted():
    samples = [held(4.0, node("repo1", "FAULT", mnt=True, fenced=True))]
    samples.append(held(6.0, node("repo1", "BACKUP", mnt=True, fenced=True)))
    (broken,) = inv.no_move(samples, BACK, "repo2", "repo1")
    assert broken.detail == "repo1 is BACKUP with the volume mounted, want BACKUP"
    samples[-1] = held(6.0, node("repo1", "FAULT"))
    (broken,) = inv.no_move(samples, BACK, "repo2", "repo1")
    assert broken.detail == "repo1 is FAULT, want BACKUP"


def test_the_holder_losing_the_volume_after_the_return_is_a_move():
    lost = Sample(5.5, (node("repo1", "BACKUP"), node("repo2", "MASTER", vip=True)))
    samples = [held(4.0, node("repo1", "FAULT")), lost, held(6.0, node("repo1", "BACKUP"))]
    (broken,) = inv.no_move(samples, BACK, "repo2", "repo1")
    assert broken.detail == "repo2 lost the VIP or the mount"


def test_mount_state_must_match_vrrp_state():
    last = Sample(9.0, (node("repo1", "BACKUP", mnt=True, fenced=True), node("repo2", "MASTER")))
    odd = inv.vrrp_matches_mount(last)
    assert [b.invariant for b in odd] == ["S8"]
    assert "repo1, repo2" in odd[0].detail
    assert inv.vrrp_matches_mount(held(9.0, node("repo1", "BACKUP"))) == []
