"""engine.remote.dispatch: which node runs the next program, which nodes can run any. Pure: no Ray."""

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.remote.dispatch import Dispatcher, alive_nodes

# A schedule: nodes join, programs start and end, nodes are lost, in any order.
STEP = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 4), st.integers(1, 8)),
    st.tuples(st.just("acquire")),
    st.tuples(st.just("release"), st.integers(0, 40)),
    st.tuples(st.just("remove"), st.integers(0, 4)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=60))
def test_every_program_goes_to_a_live_node_with_the_most_free_share(schedule):
    """Invariants after every step: acquire gives None exactly when no node is live, else a live
    node whose free share was the largest; a node's busy count is the programs it holds (never
    negative); a lost node holds nothing and is never chosen again until it is added anew."""
    nodes = Dispatcher()
    held: list[str] = []  # programs out, by node, as the caller sees them
    for step in schedule:
        if step[0] == "add":
            name = f"n{step[1]}"
            if name not in nodes:
                nodes.add(name, step[2])
        elif step[0] == "acquire":
            before = {n: (nodes.capacity_of(n) - nodes.busy(n)) / nodes.capacity_of(n) for n in nodes.nodes}
            chosen = nodes.acquire()
            assert (chosen is None) == (not before)
            if chosen is not None:
                assert before[chosen] == max(before.values())
                held.append(chosen)
        elif step[0] == "release" and held:
            nodes.release(held.pop(step[1] % len(held)))
        elif step[0] == "remove":
            name = f"n{step[1]}"
            nodes.remove(name)
            held = [h for h in held if h != name]  # its programs are sent elsewhere by the caller
            assert name not in nodes
        for name in nodes.nodes:
            assert nodes.busy(name) == held.count(name) >= 0
        assert nodes.capacity == sum(nodes.capacity_of(n) for n in nodes.nodes)


def test_ties_go_to_the_first_node_and_load_spreads_by_share():
    nodes = Dispatcher()
    assert nodes.acquire() is None  # no node at all
    nodes.add("a", 2)
    nodes.add("b", 4)
    assert [nodes.acquire() for _ in range(6)] == ["a", "b", "b", "a", "b", "b"]
    assert nodes.acquire() == "a"  # all full: still a node (programs wait in its pool), by share
    nodes.remove("a")
    nodes.release("a")  # a program of a lost node ending: nothing to count
    assert nodes.nodes == ["b"] and nodes.busy("b") == 4


def test_a_node_without_sandboxes_or_added_twice_is_refused():
    nodes = Dispatcher()
    nodes.add("a", 1)
    for name, capacity in (("b", 0), ("a", 1)):
        try:
            nodes.add(name, capacity)
        except ValueError:
            continue
        raise AssertionError(f"{name} with {capacity} accepted")


def _node(node_id: str, name: str, cpus: float = 2, alive: bool = True) -> dict:
    return {"NodeID": node_id, "NodeName": name, "Alive": alive, "Resources": {"CPU": cpus} if cpus else {}}


def test_alive_nodes_skip_dead_and_cpu_less_nodes_and_label_each_uniquely():
    listing = [
        _node("aaaaaaaaaa1", "10.0.0.1"),
        _node("bbbbbbbbbb2", "10.0.0.1", cpus=4),  # two raylets on one machine: same name
        _node("cccccccccc3", "head", cpus=0),  # a KubeRay head with num-cpus 0
        _node("dddddddddd4", "gone", alive=False),
        _node("eeeeeeeeee5", "worker", cpus=0.5),
    ]
    nodes = alive_nodes(listing)
    assert [(n.node_id, n.label, n.cpus) for n in nodes] == [
        ("aaaaaaaaaa1", "10.0.0.1~aaaaaaaa", 2),
        ("bbbbbbbbbb2", "10.0.0.1~bbbbbbbb", 4),
        ("eeeeeeeeee5", "worker", 0.5),
    ]
    assert alive_nodes([]) == []
