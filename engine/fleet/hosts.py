"""The hosts file: one vLLM base URL per line, `#` comments and blank lines allowed."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from engine.errors import HostsFileError


def parse_hosts(text: str, source: str = "hosts file") -> list[str]:
    """Base URLs in file order, normalised (no trailing slash, no trailing /v1)."""
    urls: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        url = _normalise(line)
        if url is None:
            raise HostsFileError(f"{source}:{number}: {line!r} is not a base URL like http://10.0.0.5:8000")
        if url in urls:
            raise HostsFileError(f"{source}:{number}: {url} is listed twice")
        urls.append(url)
    if not urls:
        raise HostsFileError(f"{source}: no servers listed")
    return urls


def read_hosts(path: str | Path) -> list[str]:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise HostsFileError(f"hosts file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HostsFileError(f"hosts file {str(path)!r} cannot be read: {exc}") from exc
    return parse_hosts(text, str(path))


def _normalise(line: str) -> str | None:
    if any(ch.isspace() for ch in line):
        return None
    try:
        parts = urlsplit(line)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        return None
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[:-3]
    netloc = parts.hostname if port is None else f"{parts.hostname}:{port}"
    if ":" in parts.hostname:  # IPv6 literal
        netloc = f"[{parts.hostname}]" + (f":{port}" if port is not None else "")
    return f"{parts.scheme}://{netloc}{path}"
