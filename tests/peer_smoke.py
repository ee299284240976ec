"""Checks the JSON lines of `edgeswarm bench mcp --peer` (read from stdin): one line per
corpus named in the arguments, both servers answered every timed call, and both found
hits on the narrow corpus (where every query word occurs in many documents) and edgeswarm
on a corpus file. Speeds are not checked here."""
import json
import sys

lines = [json.loads(l) for l in sys.stdin if l.strip()]
failed = []


def check(ok, what):
    print(("ok     " if ok else "FAILED ") + what)
    if not ok:
        failed.append(what)


want = sorted(sys.argv[1:]) or ["narrow", "zipf"]
check(sorted(l["corpus"] for l in lines) == want, f"one line per corpus: {want}")
for l in lines:
    c = l["corpus"]
    add = l["add"]
    for side in ("edgeswarm", "peer"):
        check(add[side]["calls"] == add["docs"], f"{c}: {side} answered every add")
        for size, s in l["search"].items():
            check(s[side]["calls"] == l["queries"], f"{c} {size}: {side} answered every search")
            if c == "narrow" or (c.startswith("file ") and side == "edgeswarm"):
                check(s[side]["mean_hits"] > 0, f"{c} {size}: {side} found hits")
    check(add["add_ratio"] > 0 and all(s["search_ratio"] > 0 for s in l["search"].values()), f"{c}: ratios computed")
print(f"peer smoke: {len(failed)} failed")
sys.exit(1 if failed else 0)
