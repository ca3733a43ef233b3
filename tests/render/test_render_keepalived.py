"""keepalived.conf: the real keepalived (Debian's 2.2.7) accepts every render; the 1.3 dialect
(CentOS 7's 1.3.5, no binary here) is checked structurally and, with its 1.3-only lines
adapted, by 2.x's config test too."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from components.bundle import PATHS, Secrets, render_node
from tests.render.renderkit import AUTHORIZED, VARIANT_IDS, Rendered, run, variant

pytestmark = pytest.mark.render


def keywords(conf: str) -> list[str]:
    """First word of every non-comment line."""
    words = []
    for line in conf.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", "!")):
            words.append(stripped.split()[0])
    return words


def as_2x(conf: str) -> str:
    """A 1.3 render in 2.x's dialect: the only lines 2.x rejects are TCP_CHECK's nb_get_retry
    (2.x: retry) and track_interface naming the instance's own interface (2.x tracks it anyway
    and fails the config test on it; 1.3.5 takes it, as the article shows)."""
    conf, swapped = re.subn(r"\bnb_get_retry\b", "retry", conf)
    assert swapped == 1
    conf, dropped = re.subn(r"\n[ \t]*track_interface \{\n[^}]*\}", "", conf)
    assert dropped == 1
    return conf


def config_test(netns: Callable[[str], str], ifname: str, conf: str, tmp: Path) -> None:
    """`keepalived -t` in a throwaway network and mount namespace where the check script the
    config names exists, root-owned in a root-only directory (enable_script_security checks
    that; the script's content is tested on its own)."""
    path = tmp / "keepalived.conf"
    path.write_text(conf, encoding="utf-8")
    stubs = " && ".join(
        f"printf '#!/bin/sh\\nexit 0\\n' > {c} && chmod 0755 {c}" for c in PATHS.check_scripts
    )
    setup = (
        f"mount -t tmpfs -o mode=0755 tmpfs {Path(PATHS.sshd_check).parent} && {stubs} && "
        f"exec keepalived -t -l -f {path}"
    )
    r = run("ip", "netns", "exec", netns(ifname), "unshare", "--mount", "sh", "-c", setup)
    assert r.returncode == 0, f"keepalived -t exit {r.returncode}:\n{r.stdout}{r.stderr}\n{conf}"


def confs(rendered: Rendered) -> dict[str, str]:
    return {n: b.file(PATHS.keepalived_conf).content.decode() for n, b in rendered.bundles.items()}


@pytest.mark.parametrize("vid", VARIANT_IDS)
def test_keepalived_accepts_render(vid, renders, netns, tmp_path) -> None:
    r = renders[vid]
    for node, conf in confs(r).items():
        words = keywords(conf)
        if r.settings.keepalived_dialect == "1.3":
            assert "nb_get_retry" in words and "retry" not in words, node
            assert "track_interface" in words, node
            conf = as_2x(conf)
        else:
            assert "retry" in words and "nb_get_retry" not in words, node
            assert "track_interface" not in words, node
        config_test(netns, r.settings.interface, conf, tmp_path)


def test_config_test_can_fail(renders, netns, tmp_path) -> None:
    """The check is real: 2.x refuses the 1.3 dialect as rendered, and a missing interface."""
    r = renders["lab-el7"]
    conf = confs(r)["repo1"]
    path = tmp_path / "k.conf"
    path.write_text(conf, encoding="utf-8")
    ns = netns(r.settings.interface)
    assert run("ip", "netns", "exec", ns, "keepalived", "-t", "-f", str(path)).returncode != 0
    path.write_text(as_2x(conf).replace(r.settings.interface, "nosuchif0"), encoding="utf-8")
    assert run("ip", "netns", "exec", ns, "keepalived", "-t", "-f", str(path)).returncode != 0


def block(conf: str, opener: str) -> str:
    """The text of the brace block opened by the line starting with ``opener``."""
    start = conf.index(opener)
    depth, i = 0, conf.index("{", start)
    while True:
        depth += {"{": 1, "}": -1}.get(conf[i], 0)
        if depth == 0:
            return conf[start : i + 1]
        i += 1


def test_article_facts_lab(renders) -> None:
    r = renders["lab-el7"]
    c = confs(r)
    assert set(c) == {"repo1", "repo2"}
    ips = {"repo1": "10.2.50.161", "repo2": "10.2.50.162"}
    for node, prio in (("repo1", 101), ("repo2", 100)):
        inst = block(c[node], "vrrp_instance REPO_CLUSTER")
        lines = [ln.strip() for ln in inst.splitlines()]
        assert f"priority {prio}" in lines
        assert "state BACKUP" in lines and "nopreempt" in lines
        assert "interface ens160" in lines
        assert "virtual_router_id 1" in lines and "advert_int 1" in lines
        assert "notify /usr/local/bin/keepalivednotify.sh" in lines
        assert "10.2.50.160/24 dev ens160" in lines
        assert "auth_type PASS" in lines and "auth_pass t3stPw0r" in lines
        assert "chk_sshd" in lines
        assert "unicast_peer {" not in lines  # the lab stack is multicast, as the article
        script = block(c[node], "vrrp_script chk_sshd")
        assert 'script "/usr/local/bin/repo-cluster-chk-sshd"' in script
        directives = [ln.strip() for ln in script.splitlines() if not ln.strip().startswith("#")]
        assert "fall 2" in directives and "rise 2" in directives
        assert not [d for d in directives if d.startswith("weight")]  # FAULT, not a weight
        glob = block(c[node], "global_defs")
        assert f"router_id {node}" in glob
        assert "script_user root" in glob and "enable_script_security" in glob
        vs = block(c[node], "virtual_server 10.2.50.160 22")
        for directive in (
            "delay_loop 30",
            "lb_algo wrr",
            "lb_kind NAT",
            "persistence_timeout 50",
            "protocol TCP",
        ):
            assert directive in vs
        assert re.findall(r"real_server (\S+) 22", vs) == [ips[node]]
        assert "connect_port 22" in vs and "connect_timeout 3" in vs
        assert "delay_before_retry 1" in vs


def test_the_rank_bits_add_their_weight_to_the_priority(renders) -> None:
    """Two nodes at 101 and 100: a MASTER may need up to 103 (the ceiling), 3 above the
    lowest: bits of weight 1 and 2, each a script that tests for its file, tracked by the
    instance on both dialects. No other weighted script may add to the priority."""
    for vid in ("lab-el7", "sim-debian"):
        r = renders[vid]
        assert r.settings.rank_ceiling == 103 and r.settings.rank_weights == (1, 2)
        for node, conf in confs(r).items():
            for w in (1, 2):
                script = block(conf, f"vrrp_script rank_{w} ")
                lines = [ln.strip() for ln in script.splitlines()]
                assert f'script "/usr/bin/test -e {PATHS.rank_bit(w)}"' in lines, (vid, node)
                assert f"weight {w}" in lines and "interval 1" in lines, (vid, node)
            track = block(block(conf, "vrrp_instance REPO_CLUSTER"), "track_script")
            assert re.findall(r"rank_\d+", track) == ["rank_1", "rank_2"], (vid, node)
            scripts = conf[: conf.index("vrrp_instance")]
            weights = re.findall(r"^\s*weight (-?\d+)", scripts, re.M)
            assert sorted(weights) == ["1", "2"], (vid, node)
            assert "rank_4" not in conf


def test_article_weighted_sshd_check_on_request(netns, tmp_path) -> None:
    """sshCheck weight renders the article's form (weight -4, no fall/rise), and keepalived
    accepts it; README says why it is not the default."""
    s = variant("sim", "debian", sshCheck="weight")
    b = render_node(s, s.nodes[0], Secrets.resolve(s), AUTHORIZED)
    conf = b.file(PATHS.keepalived_conf).content.decode()
    script = block(conf, "vrrp_script chk_sshd")
    directives = [ln.strip() for ln in script.splitlines() if not ln.strip().startswith("#")]
    assert "weight -4" in directives and "fall 2" not in directives
    config_test(netns, s.interface, conf, tmp_path)


def test_unicast_peers(renders) -> None:
    r = renders["sim-debian"]
    assert r.settings.unicast
    c = confs(r)
    for node in r.settings.nodes:
        inst = block(c[node.name], f"vrrp_instance {r.settings.vrrp_instance}")
        assert f"unicast_src_ip {node.ip}" in inst
        peers = block(inst, "unicast_peer")
        assert re.findall(r"\d+\.\d+\.\d+\.\d+", peers) == [
            str(p.ip) for p in r.settings.peers(node)
        ]


def test_punctuation_in_auth_pass(netns, tmp_path) -> None:
    """Every auth_pass settings accepts renders a config keepalived takes."""
    s = variant("sim", "debian")
    for password in ("a%b=c@d.", "x", "A1-_+*:,"):
        b = render_node(s, s.nodes[0], Secrets.resolve(s, vrrp_auth_pass=password), AUTHORIZED)
        conf = b.file(PATHS.keepalived_conf).content.decode()
        assert f"auth_pass {password}\n" in conf
        config_test(netns, s.interface, conf, tmp_path)


def test_fast_profile_vrrp_v3_sub_second(netns, tmp_path) -> None:
    """vrrpVersion 3 + advertIntervalMs 200: keepalived takes the 0.2 s advert_int and the
    garp settings; the default stays the article's v2, 1 s."""
    s = variant("sim", "debian", vrrpVersion=3, advertIntervalMs=200, garpMasterDelay=1)
    conf = render_node(s, s.nodes[0], Secrets.resolve(s), AUTHORIZED)
    text = conf.file(PATHS.keepalived_conf).content.decode()
    assert "vrrp_version 3" in block(text, "global_defs")
    inst = block(text, f"vrrp_instance {s.vrrp_instance}")
    for directive in (
        "advert_int 0.2",
        "garp_master_delay 1",
        "garp_master_repeat 5",
        "garp_master_refresh 10",
    ):
        assert re.search(rf"^\s*{directive}$", inst, re.M), directive
    assert "auth_pass" not in text  # RFC 5798: version 3 has no authentication
    config_test(netns, s.interface, text, tmp_path)
    default = variant("sim", "debian")
    plain = render_node(default, default.nodes[0], Secrets.resolve(default), AUTHORIZED)
    text = plain.file(PATHS.keepalived_conf).content.decode()
    assert "vrrp_version" not in text and re.search(r"^\s*advert_int 1$", text, re.M)
    off = variant("sim", "debian", garpMasterRefresh=0)
    text = render_node(off, off.nodes[0], Secrets.resolve(off), AUTHORIZED).file(
        PATHS.keepalived_conf
    )
    assert "garp_master_refresh" not in text.content.decode()
