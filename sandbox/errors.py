"""The one error the sandbox raises on purpose. The sandbox imports nothing from the engine; the
engine maps this error into its own tree at its edge (engine/errors.py: map_exceptions)."""


class SandboxError(Exception):
    """The sandbox cannot run programs at all: a tool missing, a jail that does not start, a
    failed self-test, a preflight that judged wrongly. The message is one line."""
