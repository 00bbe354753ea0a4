"""The command line a worker's interpreter starts with: it reads the fork-server's source
(sandbox/server.py) as the first frame on stdin and runs it. (firejail caps an argument at 4 KiB,
so the source cannot travel as `-c SOURCE`.)"""

BOOTSTRAP = (
    "import sys;b=sys.stdin.buffer;n=int.from_bytes(b.read(4),'big');"
    "exec(compile(b.read(n),'<fork-server>','exec'))"
)
