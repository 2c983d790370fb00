#!/usr/bin/env python3
"""What `sam build` links into the functions' bootstrap, from `cargo tree`: one HTTP/TLS stack
(hyper 1, rustls 0.23 on ring) and no client that only the local stack uses.

Each crate below once made the bootstrap bigger or its cold build longer for nothing a deployed
function runs (README, "Build"); a dependency's default features bring them back silently, which
this check catches.

Usage: check_linked.py [--features F]  (the features `sam build` uses: none). Exit status 1 when
a forbidden crate is linked. Tests: scripts/test_check_definitions.py.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINARY_PACKAGE = "tidb-privatelink-functions"
# What template.yaml's Architectures builds for.
TARGET = "aarch64-unknown-linux-gnu"
FORBIDDEN = {
    "aws-lc-sys": "a second crypto library (aws-lc-rs) beside ring; an SDK crate's default-https-client",
    "aws-lc-rs": "a second crypto library beside ring",
    "openssl-sys": "OpenSSL beside rustls",
    "native-tls": "the platform TLS beside rustls",
    "hyper@0": "the legacy hyper 0.14 client; an SDK crate's default `rustls` feature",
    "rustls@0.21": "the legacy rustls beside 0.23",
    "hickory-resolver": "the local stack's name-server client (feature `name-server`)",
    "aws-sdk-sso": "SSO credentials, which a function never has; aws-config's default `sso`",
}


def linked(root: Path, features: list[str]) -> set[str]:
    """Every `name@version` in the binary's normal dependency tree."""
    argv = ["cargo", "tree", "--locked", "-e", "normal", "-p", BINARY_PACKAGE, "--target", TARGET,
            "--prefix", "none", "--format", "{p}"]
    if features:
        argv += ["--features", ",".join(features)]
    out = subprocess.run(argv, cwd=root, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{out.stderr.strip()}")
    crates = set()
    for line in out.stdout.splitlines():
        match = re.match(r"(\S+) v(\S+)", line)
        if match:
            crates.add(f"{match[1]}@{match[2]}")
    return crates


def forbidden(crates: set[str]) -> list[str]:
    """A line for each linked crate that matches a forbidden `name` or `name@version-prefix`."""
    found = []
    for key, why in FORBIDDEN.items():
        name, _, version = key.partition("@")
        for crate in sorted(crates):
            crate_name, _, crate_version = crate.partition("@")
            if crate_name == name and crate_version.startswith(version):
                found.append(f"{crate}: {why}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", action="append", default=[])
    args = parser.parse_args(argv)
    try:
        crates = linked(ROOT, args.features)
    except (OSError, RuntimeError) as e:
        print(f"FAIL  {e}")
        return 1
    problems = forbidden(crates)
    print(f"{'FAIL' if problems else 'ok  '}  {BINARY_PACKAGE} for {TARGET} ({len(crates)} crates checked)")
    for problem in problems:
        print(f"        {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
