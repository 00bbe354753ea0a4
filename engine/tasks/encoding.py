"""Type-tagged values and canonical outputs, shared by the driver in the jail (which encodes the
candidate's return values and digests its outputs) and the engine (which decodes and compares:
engine/tasks/compare.py). Standard library only and self-contained: its source is embedded in
every program of the output-comparing kinds, in place of the driver's import of it
(engine/tasks/programs.py); so no `from __future__` import here (it must open a file)."""

import hashlib
import json

MAX_DEPTH = 100  # nesting of a return value
_ATOMS = {type(None): "N", bool: "b", str: "s"}


class Unserialisable(Exception):
    pass


def encode(value, depth=0):
    """A plain builtin as type-tagged JSON-able data; sets and dicts in a canonical order, ints in
    hex (no digit limit). Anything else raises Unserialisable. Exact types: a subclass of int
    with its own __eq__ is not an int."""
    kind = type(value)
    if depth > MAX_DEPTH:
        raise Unserialisable("nested too deeply")
    if kind is type(None):
        return ["N"]
    if kind is bool or kind is str:
        return [_ATOMS[kind], value]
    if kind is int:
        return ["i", format(value, "x")]
    if kind is float:
        return ["f", repr(value)]
    if kind is list or kind is tuple:
        return ["l" if kind is list else "t", [encode(item, depth + 1) for item in value]]
    if kind is set or kind is frozenset:
        items = sorted((encode(item, depth + 1) for item in value), key=canonical_json)
        return ["e" if kind is set else "z", items]
    if kind is dict:
        pairs = [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]
        return ["d", sorted(pairs, key=lambda pair: canonical_json(pair[0]))]
    raise Unserialisable(f"a return value of type {kind.__name__} (only plain builtins)")


def canonical_json(data):
    return json.dumps(data, separators=(",", ":"), ensure_ascii=True)


def digest(text):
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def canonical_stdout(text):
    """Whitespace at both ends of the output and of each line does not count (LiveCodeBench)."""
    return "\n".join(line.strip() for line in text.strip().split("\n"))
