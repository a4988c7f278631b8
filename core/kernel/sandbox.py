"""``python -P -m raykernel.kernel.sandbox POLICY -- COMMAND...``: run COMMAND confined as a
kernel is (see ``confinement``: POLICY holds a kernel spec's isolation, network, read, write and
hide, as JSON), in a PID namespace of its own (see ``descend`` there). A session's installer runs
so: a package's build gets no more than the session's own code, plus the network to reach the
index.
"""

from __future__ import annotations

import json
import os
import sys

from .confinement import ConfinementRefused, confine, die_with_parent, oom_first


def main(argv: list[str]) -> int:
    die_with_parent()
    oom_first()
    if len(argv) < 4 or argv[2] != "--":
        print("usage: python -m raykernel.kernel.sandbox POLICY -- COMMAND...", file=sys.stderr)
        return 2
    try:
        confine(json.loads(argv[1]))
    except ConfinementRefused as exc:
        print(f"raykernel: the sandbox was refused: {exc}", file=sys.stderr)
        return 3
    try:
        os.execvp(argv[3], argv[3:])
    except OSError as exc:
        print(f"raykernel: cannot run {argv[3]!r} in the sandbox: {exc}", file=sys.stderr)
    return 127


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
