#!/usr/bin/env python
# Summarise an Autobahn|Testsuite fuzzingclient report directory.
# Works on Python 2.7 and 3.x. Usage: summarize.py REPORTS_DIR AGENT [PLANNED]
# PLANNED (optional) is the number of cases wstest announced; fewer cases in the
# report (e.g. the server stopped accepting connections) is a failure.
# Exit 0 when every case passed, 1 when any case failed, 2 when the report is
# missing or empty.
#
# A case passes when its `behavior` is OK, NON-STRICT or INFORMATIONAL and its
# `behaviorClose` is not FAILED. Anything else (FAILED, WRONG CODE,
# UNIMPLEMENTED, UNCLEAN, ...) is a failure.
from __future__ import print_function

import io
import json
import os
import sys

PASSING = ("OK", "NON-STRICT", "INFORMATIONAL")

try:
    TEXT = (str, unicode)  # noqa: F821  (Python 2)
except NameError:
    TEXT = (str,)


def case_key(cid):
    out = []
    for part in cid.split("."):
        try:
            out.append((0, int(part), ""))
        except ValueError:
            out.append((1, 0, part))
    return out


def short(v, limit=400):
    s = json.dumps(v, sort_keys=True) if not isinstance(v, TEXT) else v
    return s if len(s) <= limit else s[:limit] + "... (%d chars)" % len(s)


def main():
    if len(sys.argv) not in (3, 4):
        print("usage: summarize.py REPORTS_DIR AGENT [PLANNED]", file=sys.stderr)
        return 2
    outdir, agent = sys.argv[1], sys.argv[2]
    planned = int(sys.argv[3]) if len(sys.argv) == 4 and sys.argv[3] else None
    index_path = os.path.join(outdir, "index.json")
    if not os.path.isfile(index_path):
        print("autobahn: FAILED: no report index at %s" % index_path)
        return 2
    with io.open(index_path, encoding="utf-8") as f:
        index = json.load(f)
    cases = index.get(agent)
    if not cases:
        print("autobahn: FAILED: agent %r not in %s (agents: %s)"
              % (agent, index_path, ", ".join(sorted(index))))
        return 2

    counts = {"ok": 0, "non-strict": 0, "informational": 0, "failed": 0}
    failed = []
    for cid in sorted(cases, key=case_key):
        c = cases[cid]
        b, bc = c.get("behavior"), c.get("behaviorClose")
        if b in PASSING and bc != "FAILED":
            counts[b.lower()] += 1
        else:
            counts["failed"] += 1
            failed.append(cid)

    total = len(cases)
    print("autobahn: %d cases, %d ok, %d non-strict, %d informational, %d failed"
          % (total, counts["ok"], counts["non-strict"], counts["informational"],
             counts["failed"]))

    slow = sorted(cases.items(), key=lambda kv: -(kv[1].get("duration") or 0))[:5]
    print("autobahn: slowest cases: " + ", ".join(
        "%s %dms" % (cid, c.get("duration") or 0) for cid, c in slow))

    nonstrict = [cid for cid in sorted(cases, key=case_key)
                 if cases[cid].get("behavior") == "NON-STRICT"]
    if nonstrict:
        print("autobahn: non-strict (passing) cases: " + " ".join(nonstrict))

    for cid in failed:
        c = cases[cid]
        detail = {}
        rf = c.get("reportfile")
        if rf:
            jpath = os.path.join(outdir, os.path.splitext(rf)[0] + ".json")
            if os.path.isfile(jpath):
                try:
                    with io.open(jpath, encoding="utf-8") as f:
                        detail = json.load(f)
                except ValueError:
                    detail = {}
        print("")
        print("FAILED case %s: behavior=%s behaviorClose=%s remoteCloseCode=%s"
              % (cid, c.get("behavior"), c.get("behaviorClose"),
                 c.get("remoteCloseCode")))
        if detail:
            print("  description: %s" % short(detail.get("description", ""), 300))
            print("  expectation: %s" % short(detail.get("expectation", ""), 300))
            print("  result:      %s" % short(detail.get("result", "")))
            print("  resultClose: %s" % short(detail.get("resultClose", "")))
            print("  expected:    %s" % short(detail.get("expected")))
            print("  received:    %s" % short(detail.get("received")))
            print("  report:      %s" % os.path.join(outdir, rf))

    missing = planned - total if planned is not None and planned > total else 0
    if missing:
        print("")
        print("FAILED: wstest planned %d cases but only %d were reported; "
              "%d never ran (server unreachable mid-run?)" % (planned, total, missing))

    # Plain closing line understood by CI tooling.
    print("autobahn: %d passed, %d failed" % (total - counts["failed"],
                                             counts["failed"] + missing))
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main())
