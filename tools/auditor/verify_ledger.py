#!/usr/bin/env python3
"""Independent verifier for PLED ledger exports (JSON Lines), written from
docs/ledger-format.md alone. Needs only `blake3` and `rfc8785` from PyPI.

    python3 verify_ledger.py export.jsonl        # verify hashes and chain links
    python3 verify_ledger.py --hash-only FILE    # print the hash of each line, no chain checks

Each line is one exported entry: the hashed entry object plus "entry_hash". For every line the
script removes "entry_hash", serialises the rest with RFC 8785 (JCS), computes
BLAKE3("PLED-LEDGER-ENTRY-V1" || 0x00 || bytes), and compares. Per execution it also checks
that seqs run 1, 2, 3, ... and that each prev_hash is the previous entry's hash (all zeros for
seq 1). Lines of different executions may interleave. Exit 0 when everything holds; exit 1
with the first bad line otherwise.
"""
import json
import sys

import blake3
import rfc8785

DOMAIN_TAG = b"PLED-LEDGER-ENTRY-V1\x00"
ZERO = "0" * 64


def entry_hash(obj: dict) -> str:
    hashed = {k: v for k, v in obj.items() if k != "entry_hash"}
    return blake3.blake3(DOMAIN_TAG + rfc8785.dumps(hashed)).hexdigest()


def main(argv):
    hash_only = "--hash-only" in argv
    paths = [a for a in argv if not a.startswith("--")]
    if len(paths) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    heads = {}  # execution_id -> (seq, hash)
    count = 0
    with open(paths[0], encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            obj = json.loads(line)
            computed = entry_hash(obj)
            if hash_only:
                print(computed)
                continue
            where = f"line {lineno} (execution {obj.get('execution_id')}, seq {obj.get('seq')})"
            if computed != obj.get("entry_hash"):
                print(f"FAILED {where}: entry_hash {obj.get('entry_hash')} but content hashes to {computed}")
                return 1
            seq, prev = heads.get(obj["execution_id"], (0, ZERO))
            if obj["seq"] != seq + 1:
                print(f"FAILED {where}: expected seq {seq + 1}")
                return 1
            if obj["prev_hash"] != prev:
                print(f"FAILED {where}: prev_hash {obj['prev_hash']} is not the previous entry's hash {prev}")
                return 1
            heads[obj["execution_id"]] = (obj["seq"], obj["entry_hash"])
            count += 1
    if not hash_only:
        print(f"ok: {count} entries in {len(heads)} executions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
