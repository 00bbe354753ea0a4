"""Guards against generic reward hacks: runs INSIDE the jail, in the fork-server's child.

Standard library only. Its source travels into the jail in front of server.py's (see worker.py:
SERVER_SOURCE), so it has no imports of the project and defines only names prefixed
`guard`/`Guard`/`_g`.

A guarded HumanEval program is run in three steps instead of one `exec`:

1. the candidate (prompt + completion) in globals of its own;
2. `GuardSnapshot.restore()`: what the test's code relies on is put back as the fork-server had
   it before any program ran (builtins, the attributes of every module imported then, the import
   machinery: the sys.modules entries of the modules the test names, sys.meta_path,
   sys.path_hooks, sys.path, sys.path_importer_cache; trace and profile hooks; random's generator
   is reseeded); what an honest completion sets up stays (its own globals, the modules it
   imported, the recursion limit);
3. the test in globals of its own (the candidate's, minus any name that shadows a builtin), then
   `check(guard_call(candidate, ...))`: every call deep-copies its arguments, converts the value
   returned to a plain copy built from builtin types (`guard_plain`), and puts back what the
   test names (builtins, sys, the import hooks, the modules named in its code).

`guard_plain` reads values through the builtin base types' own C methods (`int.__int__`,
`str.__str__`, `tuple.__iter__`...), never through methods a subclass defines, so an object
whose __eq__ is always true never reaches the test; a value of any other type is a TypeError.

What this cannot stop: code written against this harness (it runs in the same process and can
find and undo any of this, or forge the pass record), threads, signal handlers or finalizers
the candidate leaves running during the test, attributes of classes (e.g. random.Random's), and
a test that itself calls what the candidate defined other than the entry point.
"""

import builtins as _g_builtins
import sys as _g_sys
import types as _g_types
from array import array as _g_array
from operator import is_not as _g_is_not

GUARD_MARKER = (
    "\n#<engine guards: the test of "  # + entry point + ">\n", then the test, then check(entry point)
)
_G_MISSING = object()
_G_BUILTIN_NAMES = frozenset(_g_builtins.__dict__)
# sys attributes the harness itself sets in each child (its stdin, output streams): not restored.
_G_SYS_OWN = frozenset(
    (
        "stdin",
        "__stdin__",
        "stdout",
        "__stdout__",
        "stderr",
        "__stderr__",
        "last_type",
        "last_value",
        "last_traceback",
        "last_exc",
    )
)


def guard_split(program):
    """(candidate source, test source, entry point) of a program built by sandbox/program.py with
    guards, or None. The marker is searched from the end: a completion comes before the test and
    cannot move it (a completion that hides it in a string fails to compile on its own)."""
    head, sep, tail = program.rpartition(GUARD_MARKER)
    if not sep:
        return None
    entry, _, rest = tail.partition(">\n")
    test, _, call = rest.rpartition("\n")
    if not entry.isidentifier() or call != "check(" + entry + ")":
        return None
    before = program[: len(program) - len(rest)]
    breaks = before.count("\n") + before.count("\r") - before.count("\r\n")  # as the compiler counts lines
    return head, "\n" * breaks + test, entry  # test lines keep their program line numbers


# -- plain copies ------------------------------------------------------------------------------

_G_SCALARS = frozenset((type(None), bool, int, float, complex, str, bytes))
# Base type -> how to read a (subclass) instance through the base type's own C code.
_G_BY_VALUE = (
    (int, int.__int__),
    (float, float.__float__),
    (complex, complex.__complex__),
    (str, str.__str__),
    (bytes, bytes.__bytes__),
)


def guard_plain(
    value,
    memo=None,
    _type=type,
    _id=id,
    _scalars=_G_SCALARS,
    _by_value=_G_BY_VALUE,
    _issubclass=issubclass,
    _TypeError=TypeError,
):
    """A copy of `value` made only of None, bool, int, float, complex, str, bytes, tuple, list,
    dict, set and frozenset (exactly those types); a TypeError for anything else."""
    kind = _type(value)
    if kind in _scalars:
        return value
    for base, read in _by_value:
        if _issubclass(kind, base):
            return read(value)
    if memo is None:
        memo = {}
    elif _id(value) in memo:
        return memo[_id(value)]
    return _guard_container(value, kind, memo)


def _guard_container(
    value,
    kind,
    memo,
    _issubclass=issubclass,
    _id=id,
    _type=type,
    _scalars=_G_SCALARS,
    _TypeError=TypeError,
    _list=list,
    _tuple=tuple,
    _dict=dict,
    _set=set,
    _frozenset=frozenset,
    _list_iter=list.__iter__,
    _tuple_iter=tuple.__iter__,
    _dict_items=dict.items,
    _set_iter=set.__iter__,
    _frozenset_iter=frozenset.__iter__,
):
    """(Builtins bound as defaults: this runs before builtins are put back after a call.)"""
    plain = guard_plain
    if _issubclass(kind, _list):
        list_copy: list[object] = []
        memo[_id(value)] = list_copy  # before the items: a list may hold itself
        list_copy.extend(item if _type(item) in _scalars else plain(item, memo) for item in _list_iter(value))
        return list_copy
    if _issubclass(kind, _tuple):
        return _tuple(item if _type(item) in _scalars else plain(item, memo) for item in _tuple_iter(value))
    if _issubclass(kind, _dict):
        dict_copy: dict[object, object] = {}
        memo[_id(value)] = dict_copy
        for key, item in _dict_items(value):
            dict_copy[plain(key, memo)] = item if _type(item) in _scalars else plain(item, memo)
        return dict_copy
    if _issubclass(kind, _set):
        return _set(plain(item, memo) for item in _set_iter(value))
    if _issubclass(kind, _frozenset):
        return _frozenset(plain(item, memo) for item in _frozenset_iter(value))
    raise _TypeError(
        f"the candidate returned a {kind.__name__!r}: only builtin types reach the test (guards)"
    )


def guard_copy_args(
    values,
    _type=type,
    _plain=guard_plain,
    _TypeError=TypeError,
    _containers=frozenset((list, tuple, dict, set, frozenset)),
):
    """Arguments as the candidate gets them: builtin values deep-copied, anything else (also a
    container holding anything else) as is."""
    copies = []
    for v in values:
        if _type(v) in _containers:
            try:
                v = _plain(v)
            except _TypeError:
                pass
        copies.append(v)
    return copies


# -- the environment ---------------------------------------------------------------------------


class GuardSnapshot:
    """What the test relies on, recorded once in the fork-server before any program runs (so a
    child pays nothing to take it), and put back by `restore()`.

    Finding what changed must not touch every object (each refcount update would copy a page of
    the fork-server's memory into the child: ~2 ms for all module dicts): where CPython keeps a
    version tag in each dict (3.11, 3.12), only the dicts whose tag moved are compared."""

    def __init__(self):
        import _random
        import random

        sys = _g_sys
        module_type = _g_types.ModuleType
        dicts: list[tuple[dict, dict, frozenset, str]] = [
            (_g_builtins.__dict__, dict(_g_builtins.__dict__), frozenset(), "modules")
        ]  # first: see restore()
        # (dict, its snapshot, keys not restored, extra keys: "keep", "modules", "drop" or "named"; see
        # _guard_restore_dict)
        for name, module in list(sys.modules.items()):  # not __main__: the fork-server itself
            if type(module) is module_type and module is not _g_builtins and name != "__main__":
                skip = _G_SYS_OWN if module is sys else frozenset()
                dicts.append((module.__dict__, dict(module.__dict__), skip, "modules"))
        self.by_name: dict[
            str, list[int]
        ] = {}  # a module's name and its last component -> indices of its dict
        for i, (d, *_) in enumerate(dicts):
            module_name = d.get("__name__")
            if type(module_name) is str:
                for key in {module_name, module_name.rpartition(".")[2]}:
                    self.by_name.setdefault(key, []).append(i)
        dicts.append((sys.modules, dict(sys.modules), frozenset(), "named"))
        dicts.append((sys.path_importer_cache, dict(sys.path_importer_cache), frozenset(), "keep"))
        dicts.append((random._inst.__dict__, dict(random._inst.__dict__), frozenset(), "drop"))
        self.dicts = dicts
        self.lists: list[tuple[list, list]] = [
            (lst, list(lst)) for lst in (sys.meta_path, sys.path_hooks, sys.path)
        ]
        self.random = random._inst
        self.random_dict = len(dicts) - 1
        self.indices = tuple(range(len(dicts)))
        self.always = (0, self.by_name["sys"][0], *range(len(dicts) - 3, len(dicts)))
        self.touched = []  # indices of the dicts restored by the current restore()
        self.reseed = _random.Random.seed  # random.Random's C base: seeds from os.urandom
        self.trace = (sys.gettrace, sys.settrace, sys.gettrace())
        self.profile = (sys.getprofile, sys.setprofile, sys.getprofile())
        # Version tags: addresses and values in flat arrays, so that reading them in a child
        # touches (and copies) no page of the fork-server's objects.
        self.tag, offset = _guard_version_tags()
        self.addresses = _g_array("Q", [id(d) + offset for d, *_ in dicts])
        self.versions = _g_array("Q", [self.tag(a).value for a in self.addresses] if self.tag else [])
        self.random_state = _guard_random_state(random._inst)
        self.restore()  # here once, so that no child pays for the first call (ctypes, bytecode warm-up)
        guard_plain([1, (2.0,), {"3": {None}}])

    def accept(self, module):
        """The harness itself changed this module (e.g. sys.stdin in the child): not a change to undo."""
        if self.tag is not None:
            i = self.by_name[module.__name__][0]
            self.versions[i] = self.tag(self.addresses[i]).value

    def used_by(self, code):
        """(indices, names): the dicts a test's code can reach by name (builtins, sys, the import
        machinery, random's generator, every module named in it), and the names in it (of
        sys.modules, only the entries of these modules are put back: comparing all would touch
        every module object)."""
        names, stack = set(), [code]
        while stack:
            code = stack.pop()
            names.update(code.co_names)
            stack.extend(const for const in code.co_consts if type(const) is _g_types.CodeType)
        names.update(name.rpartition(".")[0] for name in list(names) if "." in name)  # packages of submodules
        return self.always + tuple(
            sorted({i for name in names for i in self.by_name.get(name, ())})
        ), frozenset(names)

    def restore(self, reseed=False, indices=None, names=None, _is_not=_g_is_not):
        """Put back what changed (of the dicts at `indices`, if given; of sys.modules, the entries
        in `names`, if given); reseed random's generator if asked or if it was seeded. Builtins
        come first, and until they are back no builtin is called (one may be the candidate's)."""
        dicts, tag, addresses, versions, touched = (
            self.dicts,
            self.tag,
            self.addresses,
            self.versions,
            self.touched,
        )
        for i in self.indices if indices is None else indices:
            if tag is None or tag(addresses[i]).value != versions[i]:
                if _guard_restore_dict(*dicts[i], names):
                    touched.append(i)
                if tag is not None:
                    versions[i] = tag(addresses[i]).value
        for lst, snapshot in self.lists:
            if len(lst) != len(snapshot) or any(map(_is_not, lst, snapshot)):
                lst[:] = snapshot
        get_trace, set_trace, trace = self.trace
        if get_trace() is not trace:
            set_trace(trace)
        get_profile, set_profile, profile = self.profile
        if get_profile() is not profile:
            set_profile(profile)
        _guard_monitoring_off()
        if reseed or self.random_dict in touched:
            self.reseed(self.random)
            if tag is not None:
                versions[self.random_dict] = tag(addresses[self.random_dict]).value
        touched.clear()


def _guard_restore_dict(d, snapshot, skip, extra, names=None):
    """Make `d` hold `snapshot`'s values (by identity) again; True if anything was put back. Extra
    keys: kept ("keep"), dropped ("drop"), or dropped unless a module or outside builtins' names
    ("modules": submodules and a module's own lazy globals stay, a shadowed builtin does not);
    "named": extra keys kept, and only the keys in `names` put back, if given."""
    changed = False
    get = d.get
    items = (
        snapshot.items()
        if extra != "named" or names is None
        else [(k, snapshot[k]) for k in names if k in snapshot]
    )
    for key, value in items:
        if get(key, _G_MISSING) is not value and key not in skip:
            d[key] = value
            changed = True
    if extra not in ("keep", "named") and len(d) != len(snapshot):
        for key in [k for k in d if k not in snapshot]:
            if extra == "drop" or (
                key in _G_BUILTIN_NAMES and not issubclass(type(d[key]), _g_types.ModuleType)
            ):
                del d[key]
                changed = True
    return changed


def _guard_version_tags():
    """(tag, offset): `tag(id(d) + offset).value` is dict d's version tag (PEP 509: CPython
    changes it on every change of the dict); (None, 0) where this interpreter keeps none, and
    then every dict is compared."""
    try:
        import ctypes

        tag, offset = (
            ctypes.c_uint64.from_address,
            3 * ctypes.sizeof(ctypes.c_ssize_t),
        )  # after refcnt, type, ma_used
        probe = {"a": 1}
        seen = [tag(id(probe) + offset).value]
        probe["a"] = 2
        seen.append(tag(id(probe) + offset).value)
        probe["b"] = 3
        seen.append(tag(id(probe) + offset).value)
        if _g_sys.implementation.name == "cpython" and len(set(seen)) == 3:
            return tag, offset
    except Exception:  # noqa: BLE001 - no ctypes, another layout: compare everything instead
        pass
    return None, 0


def _guard_random_state(generator):
    """A function returning the raw state of random's generator (CPython's RandomObject: an int
    index, then 624 uint32 words, after the object header), to notice a seed() or a draw during a
    call in a few microseconds; where that layout cannot be confirmed, a function whose result
    never repeats (then random is reseeded after every call)."""
    try:
        import ctypes

        address, size = id(generator) + 2 * ctypes.sizeof(ctypes.c_ssize_t), 4 + 624 * 4

        def state(string_at=ctypes.string_at):
            return string_at(address, size)

        saved = generator.getstate()
        try:
            first = state()
            generator.random()
            drawn = state()
            generator.setstate(saved)
            if first != drawn and state() == first:
                return state
        finally:
            generator.setstate(saved)
    except Exception:  # noqa: BLE001
        pass
    return object


def _guard_monitoring_off():
    """sys.monitoring (3.12+): a tool the candidate registered could run code during the test."""
    monitoring = getattr(_g_sys, "monitoring", None)
    if monitoring is None:
        return
    for tool in range(6):
        if monitoring.get_tool(tool) is not None:
            monitoring.set_events(tool, 0)
            monitoring.free_tool_id(tool)


# -- running a guarded program -----------------------------------------------------------------


def guard_run(snapshot, candidate_source, test_source, entry_point, _exec=exec, _compile=compile):
    """Steps 1-3 of the module docstring; returns when check() returned, raises otherwise."""
    candidate_code = _compile(candidate_source, "<program>", "exec")
    test_code = _compile(test_source, "<program>", "exec")
    indices, names = snapshot.used_by(test_code)
    candidate_globals: dict = {}  # whatever the candidate defines
    _exec(candidate_code, candidate_globals)
    snapshot.restore(reseed=True, names=names)
    test_globals = {k: v for k, v in candidate_globals.items() if k not in _G_BUILTIN_NAMES}
    test_globals["__builtins__"] = _g_builtins
    guarded = test_globals[entry_point] = guard_call(candidate_globals[entry_point], snapshot, indices, names)
    _exec(test_code, test_globals)  # (a test may call the entry point by its name, too: HumanEval/33)
    snapshot.restore(indices=indices, names=names)
    test_globals["check"](guarded)


def guard_call(
    candidate, snapshot, indices, names, _copy=guard_copy_args, _plain=guard_plain, _dict=dict, _zip=zip
):
    """`candidate` as the test sees it (see the module docstring, step 3)."""

    random_state = snapshot.random_state

    def candidate_call(*args, **kwargs):
        args = _copy(args)
        if kwargs:
            kwargs = _dict(_zip(kwargs, _copy(list(kwargs.values()))))
        before = random_state()
        try:
            result = candidate(*args, **kwargs)
            value = _plain(result)
            result = None  # a finalizer of what it returned runs now, before the restore
        finally:
            snapshot.restore(
                reseed=random_state() != before, indices=indices, names=names
            )  # seeded or drawn from: reseeded
        return value

    return candidate_call
