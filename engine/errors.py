"""Every error the engine raises on purpose.

    EngineError
    ├── InputError              the user's input is wrong; the CLI prints one line, exits 2
    │   ├── HostsFileError      missing, empty or malformed hosts file
    │   ├── DatasetError        unknown dataset, unreadable file, rows missing fields
    │   ├── RunConfigError      --out holds a run with another sampling configuration
    │   ├── RunLockedError      another process is running the run in that directory
    │   └── StoreDamagedError   the results store has a corrupt page or is not SQLite
    ├── FleetError              no server answered as a vLLM server would (exit 2)
    │   └── UnauthorizedError   a server refused our credentials (HTTP 401/403): --api-key
    ├── SandboxError            the sandbox cannot run programs at all (exit 2; from sandbox.errors)
    ├── StorageError            the results store cannot be written (disk full ...; exit 2)
    └── StreamError             one request failed; the unfinished samples are retried
        ├── HTTPStatusError     the server answered with an error status before streaming
        └── ProtocolError       the server sent bytes that are not a valid SSE/OpenAI stream
            └── IgnoredNError   the server answered one choice where n > 1 were asked

Library errors (aiohttp, sqlite3, datasets) are translated at the edge with ``raise ... from``.
So is the sandbox package's own error (it imports nothing from the engine): the functions that
open a SandboxPool are decorated with ``@map_exceptions(SANDBOX_ERRORS)``, as httpcore maps the
errors of its backends.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

import sandbox.errors


class EngineError(Exception):
    """Base of all deliberate errors."""


class InputError(EngineError):
    """Bad input from the user: reported in one line, exit status 2."""


class HostsFileError(InputError):
    pass


class DatasetError(InputError):
    pass


class RunConfigError(InputError):
    pass


class RunLockedError(InputError):
    pass


class StoreDamagedError(InputError):
    pass


class FleetError(EngineError):
    pass


class UnauthorizedError(FleetError):
    """Asking again with the same credentials cannot help: the run ends (exit 2)."""


class SandboxError(EngineError):
    """sandbox.errors.SandboxError, mapped at the engine's edge (SANDBOX_ERRORS)."""


class StorageError(EngineError):
    """Writing the store failed; what was committed before is intact."""


class StreamError(EngineError):
    """A request failed. `retryable`: asking again could help; `connect_failed`: the server
    was not even reached (down, or still loading); `retry_after`: the server asked for a pause;
    `unauthorized`: it refused our credentials."""

    retryable = True
    unauthorized = False  # the server refused our credentials (401/403): the run ends

    def __init__(self, message: str, *, connect_failed: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.connect_failed = connect_failed
        self.retry_after = retry_after


class HTTPStatusError(StreamError):
    def __init__(self, status: int, message: str, retry_after: float | None = None):
        super().__init__(f"HTTP {status}: {message}", retry_after=retry_after)
        self.status = status
        # 4xx other than 408/429 means the request itself is wrong: asking again won't help.
        self.retryable = status >= 500 or status in (408, 429)
        self.unauthorized = status in (401, 403)


class ProtocolError(StreamError):
    pass


class IgnoredNError(ProtocolError):
    """The stream ended with only choice 0 where n > 1 were asked: the server ignores `n`
    (llama.cpp-style servers, some gateways). Ask it for one sample per request."""


SANDBOX_ERRORS: Mapping[type[Exception], type[EngineError]] = {sandbox.errors.SandboxError: SandboxError}


@contextlib.asynccontextmanager
async def map_exceptions(mapping: Mapping[type[Exception], type[EngineError]]) -> AsyncIterator[None]:
    """`async with` (or decorate a coroutine function): an exception of a type in `mapping` leaves
    as the engine's error of the same message, raised from it; any other passes unchanged."""
    try:
        yield
    except Exception as exc:
        for source, target in mapping.items():
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise
