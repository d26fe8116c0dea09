#!/usr/bin/env python3
"""Checks what `docker build -f deploy/Dockerfile .` would send as its context.

`COPY . .` copies the whole context into the build stage, so whatever the
repository root's .dockerignore lets through ends up in the builder's layers:
the data directory of `concierge dev` (.concierge/: the admin key and the
internal secret), SQLite files, and gigabytes of target/. This lays out every
tracked file plus such local files in a scratch copy and applies the real
.dockerignore with docker-py's own matcher (no Docker engine needed): every
tracked file must stay in, none of the local ones may.

Usage: check-docker-context.py [REPO]
"""

import os
import subprocess
import sys
import tempfile

from docker.utils.build import exclude_paths

# What a developer's or CI's checkout holds beside the tracked files.
LOCAL_ONLY = [
    ".concierge/admin.key",
    ".concierge/internal.secret",
    ".concierge/customers.db",
    ".concierge/files/disputes/d1/documents/x/0123",
    "concierge-files/disputes/d1/documents/x/0123",
    "services/concierge/.concierge/admin.key",
    "target/debug/concierge",
    "target/release/concierge",
    "services/cases/target/debug/build/out.rs",
    "cases.db",
    "cases.db-wal",
    "gateway.db-shm",
    "node_modules/@bufbuild/buf/bin/buf",
    ".git/config",
]


def main(repo):
    try:
        with open(os.path.join(repo, ".dockerignore")) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = []  # docker then sends everything
    # As `docker build` and docker-py read it: comments and blanks dropped.
    patterns = [p for p in (line.strip() for line in lines) if p and not p.startswith("#")]
    tracked = subprocess.run(
        ["git", "-C", repo, "ls-files"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    with tempfile.TemporaryDirectory() as scratch:
        for path in tracked + LOCAL_ONLY:
            full = os.path.join(scratch, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            open(full, "w").close()
        context = set(exclude_paths(scratch, patterns, dockerfile="deploy/Dockerfile"))
    leaked = [p for p in LOCAL_ONLY if p in context]
    dropped = [p for p in tracked if p not in context]
    for p in leaked:
        print(f"{p}: local file would be sent in the build context", file=sys.stderr)
    for p in dropped:
        print(f"{p}: tracked file would be missing from the build context", file=sys.stderr)
    if leaked or dropped:
        sys.exit(".dockerignore: build context is wrong (see above)")
    print(f"docker build context: {len(tracked)} tracked files in, {len(LOCAL_ONLY)} local files out")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
