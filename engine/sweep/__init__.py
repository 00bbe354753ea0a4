"""The sweep, split by responsibility: see sweep.py's docstring for the parts. Import them from
their modules (this package imports nothing, so `engine status` and the metrics can read
`snapshot.py` without loading the request path)."""
