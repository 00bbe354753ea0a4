"""The fleet of vLLM servers.

hosts.py   the hosts file
state.py   ServerState and the pure decisions about it (breaker, pick_server, probe back-off)
probes.py  Fleet: discovery, health and load probes, hosts-file reloads (the I/O)
"""
