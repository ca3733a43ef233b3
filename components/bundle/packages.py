"""Package sources and packages per OS family.

- el7: CentOS 7 is end-of-life. CentOS-Base.repo is replaced by one pointing at the last tree
  on vault.centos.org (7.9.2009), EPEL 7 at its archive; epel-release, as the article installs,
  brings the EPEL key our epel.repo names (see ``_EL7_EPEL_RELEASE``).
- el8, el9: keepalived is in the base OS, no EPEL needed.
- el*: ceph-common from ``cephRepoUrl`` (ceph.repo).
- debian, ubuntu: everything is in main; apt as shipped.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from components.bundle.render import render
from components.config import Node, Settings

q = shlex.quote
DEBIAN_LIKE = ("debian", "ubuntu")

BASE_PACKAGES = ("keepalived", "psmisc", "xfsprogs", "ceph-common")

# el7: our epel.repo (gpgcheck=1) names /etc/pki/rpm-gpg/RPM-GPG-KEY-EPEL-7, which only the
# epel-release package (from CentOS extras) installs. So epel-release goes in on its own, before
# the metadata refresh and before any install that could pull a package from EPEL: installed in
# the same transaction, the EPEL packages would be checked against a key that is not there yet.
#
# Which epel.repo wins: both ours and the package's are /etc/yum.repos.d/epel.repo with the same
# repo ids, so there is never a second [epel] for yum to choose from; only the file's content
# is at stake, and it always ends up ours:
# - ours first (cloud-init's write_files runs before these commands; a converge writes it
#   whenever its digest differs): the package marks it %config(noreplace), and rpm, finding an
#   unowned file that differs, keeps it and writes the package's copy as epel.repo.rpmnew
#   (which yum never reads);
# - the package first (a template that already has it): writing ours replaces its file.
_EL7_EPEL_RELEASE = "rpm -q epel-release >/dev/null || yum -y install epel-release"

# Commands run after the bundle's repo files are in place and before packages are installed:
# they make the package manager forget metadata fetched from the old (dead) sources.
_COMMANDS: dict[str, tuple[str, ...]] = {
    "el7": ("yum -y clean metadata", _EL7_EPEL_RELEASE, "yum -y makecache fast"),
    "el8": ("dnf -y clean metadata", "dnf -y makecache"),
    "el9": ("dnf -y clean metadata", "dnf -y makecache"),
    "debian": ("apt-get update -qq",),
    "ubuntu": ("apt-get update -qq",),
}

_ARCH_DIRS = ("x86_64", "aarch64", "$basearch")


def is_el(os_family: str) -> bool:
    return os_family.startswith("el")


def packages(s: Settings) -> tuple[str, ...]:
    return (("epel-release",) if s.os_family == "el7" else ()) + BASE_PACKAGES


def commands(s: Settings) -> tuple[str, ...]:
    return _COMMANDS[s.os_family]


def _ceph_repo_urls(url: str) -> tuple[str, str, str | None]:
    """(baseurl, gpgkey, noarch baseurl or None) for ``cephRepoUrl``.

    download.ceph.com and its mirrors keep the release key at ``/keys/release.asc`` and the
    noarch packages beside the architecture directory (``.../el7/x86_64`` -> ``.../el7/noarch``).
    """
    parts = urlsplit(url)
    gpgkey = urlunsplit((parts.scheme, parts.netloc, "/keys/release.asc", "", ""))
    path = parts.path.rstrip("/")
    head, _, last = path.rpartition("/")
    noarch = None
    if last in _ARCH_DIRS:
        slash = "/" if parts.path.endswith("/") else ""
        noarch = urlunsplit(parts._replace(path=f"{head}/noarch{slash}"))
    return url, gpgkey, noarch


def repo_files(s: Settings, node: Node) -> tuple[tuple[str, str], ...]:
    """(path on the node, content) of every package source file the OS family needs."""
    files: list[tuple[str, str]] = []
    if s.os_family == "el7":
        files.append(
            ("/etc/yum.repos.d/CentOS-Base.repo", render("CentOS-Base.repo.j2", node=node))
        )
        files.append(("/etc/yum.repos.d/epel.repo", render("epel.repo.j2", node=node)))
    if is_el(s.os_family):
        if not s.ceph_repo_url:  # settings.load already refuses this
            raise ValueError(f"cephRepoUrl is required for {s.os_family}")
        url, gpgkey, noarch = _ceph_repo_urls(s.ceph_repo_url)
        content = render("ceph.repo.j2", node=node, url=url, gpgkey=gpgkey, noarch_url=noarch)
        files.append(("/etc/yum.repos.d/ceph.repo", content))
    return tuple(files)


def install_commands(family: str, sources: Sequence[str], missing: Sequence[str]) -> list[str]:
    """Package sources then one install of what is missing; nothing at all when none is.

    The sources (repo setup commands from the bundle) only matter for installing, so a node
    with every package runs neither them nor ``apt-get update`` (lab nodes have no route out).
    """
    if not missing:
        return []
    names = " ".join(q(p) for p in missing)
    if family in DEBIAN_LIKE:
        # the bundle's sources end with `apt-get update` on Debian: do not run it twice
        update = [] if any("apt-get update" in cmd for cmd in sources) else ["apt-get update -qq"]
        install = [
            *update,
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
            f"-o Dpkg::Options::=--force-confold {names}",
        ]
    elif family == "el7":
        install = [f"yum -y -q install {names}"]
    else:
        install = [f"dnf -y -q install {names}"]
    return [*sources, *install]
