"""One simulated server's HTTP face: request checks, response bytes, routes, /metrics."""
