"""What scripts/lab and scripts/lab-down ask of the lab's Pulumi deployment
(:mod:`components.lab.deploy`), as ``python -m components.cli.lab_deploy COMMAND [STACK]``:

    prepare STACK    make or refresh the project copy; print its directory
    env              print the Pulumi environment as shell ``export`` lines
    deployed STACK   exit 0 when the lab's backend holds the stack, 1 otherwise
    tsig STACK       print the lab's TSIG key (for ``pulumi config set --secret``, via a pipe)
    ceph-key STACK   print the lab Ceph's key of client.<cephUser> (the same way)
"""

from __future__ import annotations

import shlex
import sys

from components.config import PROJECT_ROOT, load_stack_file, stack_file
from components.lab import deploy
from components.lab.secrets import LabSecretsError, ceph_key, dns_tsig_secret


def main(argv: list[str]) -> int:
    command, *rest = argv or ["help"]
    stack = rest[0] if rest else "sim"
    if command == "prepare":
        print(deploy.prepare(stack))
    elif command == "env":
        for name, value in deploy.environment().items():
            print(f"export {name}={shlex.quote(value)}")
    elif command == "deployed":
        return 0 if deploy.deployed(stack) else 1
    elif command in ("tsig", "ceph-key"):
        s = load_stack_file(stack_file(stack, PROJECT_ROOT))
        secret = dns_tsig_secret if command == "tsig" else ceph_key
        try:
            sys.stdout.write(secret(s, stack, PROJECT_ROOT))
        except LabSecretsError as e:
            print(f"lab_deploy: {e}", file=sys.stderr)
            return 2
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
