"""The fork-server: in each jail, one Python process that imports once and forks a fresh child
per program. In the jail (standard library only, sent as source): guards.py, child.py, pipes.py, then server.py,
started by boot.py's command line. Engine side: worker.py (one jail, the protocol) and
backend.py (ForkServerBackend: the set of jails, recycling, the reserved jail)."""
