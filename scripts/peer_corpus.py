"""Writes a natural-language corpus for `edgeswarm bench mcp --peer --peer-corpus FILE`:
one team's operations memories (short sentences about people, services and incidents)
and questions asked the way an agent asks them. JSON lines: documents
`{"category", "topic", "content", "tags"}`, then queries `{"query"}`. Deterministic.

    python3 scripts/peer_corpus.py 50000 /tmp/nl_corpus.jsonl        # docs/peer.md's run
    python3 scripts/peer_corpus.py 150 tests/data/peer_corpus_sample.jsonl 20   # CI's sample
"""
import json
import random
import sys

PEOPLE = ["Ana", "Bilal", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ivo", "Jun", "Kemi", "Lars"]
SERVICES = ["billing API", "search cluster", "auth gateway", "ingest pipeline", "mobile app", "data warehouse",
            "payment service", "email relay", "recommendation model", "CDN edge"]
EVENTS = [
    "deployed version {v} of the {s} after the canary stayed green for an hour",
    "rolled back the {s} because p99 latency doubled after the {v} release",
    "found that the {s} cache was evicting hot keys too early and raised its size",
    "paged the on-call for the {s}: disk usage crossed 90% on two replicas",
    "wrote the postmortem for the {s} outage and listed three follow-up tasks",
    "moved the {s} to the new region and verified failover works",
    "asked for a budget increase for the {s}; finance wants numbers by Friday",
    "rotated the certificates of the {s} before they expired",
    "noticed flaky tests in the {s} build and quarantined two of them",
    "agreed with the team that the {s} schema migration runs on Sunday night",
    "reviewed the pull request that adds retries with jitter to the {s} client",
    "measured the {s} throughput at {n} requests per second on the staging cluster",
]
QUESTIONS = [
    "When was the {s} rolled back?", "who rotated the {s} certificates", "{s} failover to the new region",
    "why did latency double on the {s}", "disk usage alert on {s} replicas", "postmortem follow-up tasks for the {s} outage",
    "{s} schema migration", "flaky tests in the {s} build", "What did {p} deploy?", "{p} budget increase", "{s}", "{p}",
    "retries with jitter", "throughput on staging",
]


def main() -> None:
    ndocs, out = int(sys.argv[1]), sys.argv[2]
    nqueries = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    r = random.Random(7)
    with open(out, "w") as f:
        for i in range(ndocs):
            p, s = r.choice(PEOPLE), r.choice(SERVICES)
            text = r.choice(EVENTS).format(s=s, v=f"{r.randint(1, 9)}.{r.randint(0, 20)}", n=r.randint(100, 9000))
            doc = {"category": f"team-{i % 5}", "topic": f"{p} on the {s}", "content": f"{p} {text}.",
                   "tags": [s.split()[0].lower(), p.lower()]}
            f.write(json.dumps(doc) + "\n")
        for _ in range(nqueries):
            q = r.choice(QUESTIONS).format(s=r.choice(SERVICES), p=r.choice(PEOPLE))
            f.write(json.dumps({"query": q}) + "\n")


if __name__ == "__main__":
    main()
