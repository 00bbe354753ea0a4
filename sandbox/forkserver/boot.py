"""How a worker's interpreter starts, the same for every launcher: isolated Python flags, and a
bootstrap that reads the fork-server's source (forkserver/guards.py + forkserver/server.py) as
the first frame on stdin and runs it. (firejail caps an argument at 4 KiB, so the source cannot
travel as `-c SOURCE`.)"""

PYTHON_FLAGS = ("-I", "-S", "-B", "-u", "-X", "utf8")  # isolated, no site, no .pyc, unbuffered, UTF-8
BOOTSTRAP = (
    "import sys;b=sys.stdin.buffer;n=int.from_bytes(b.read(4),'big');"
    "exec(compile(b.read(n),'<fork-server>','exec'))"
)


def boot_command(python: str, server_config: str, label: str) -> list[str]:
    """The interpreter's argv: the fork-server's CONFIG_JSON, then the label `ps` shows (if any)."""
    return [python, *PYTHON_FLAGS, "-c", BOOTSTRAP, server_config, *([label] if label else [])]
