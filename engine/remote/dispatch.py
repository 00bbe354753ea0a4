"""Which nodes can verify, and which one runs the next program: plain synchronous decisions,
carried out by engine/remote/ray_backend.py.

    nodes = Dispatcher()
    nodes.add("node-a", capacity=4)
    node = nodes.acquire()     # the live node with the most free sandboxes, or None
    ...                        # run the program there
    nodes.release(node)        # also fine after nodes.remove(node): a lost node is forgotten

Free sandboxes may go negative (more programs sent than a node has sandboxes: they wait in that
node's own pool), so the choice is by free share, never a refusal. Ties go to the node added
first, so a small load does not wander across the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Node:
    capacity: int
    busy: int = 0

    def free_share(self) -> float:
        return (self.capacity - self.busy) / self.capacity


class Dispatcher:
    def __init__(self) -> None:
        self._nodes: dict[str, _Node] = {}  # in the order they were added

    def add(self, node: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a node needs at least one sandbox, not {capacity}")
        if node in self._nodes:
            raise ValueError(f"node {node!r} is already dispatched to")
        self._nodes[node] = _Node(capacity)

    def remove(self, node: str) -> None:
        """The node is lost: nothing more goes there; what it held is the caller's to send again."""
        self._nodes.pop(node, None)

    def acquire(self) -> str | None:
        """The node for the next program (counted busy until `release`), or None when no node is left."""
        if not self._nodes:
            return None
        node = max(self._nodes, key=lambda name: self._nodes[name].free_share())
        self._nodes[node].busy += 1
        return node

    def release(self, node: str) -> None:
        if (held := self._nodes.get(node)) is not None:
            held.busy -= 1

    def busy(self, node: str) -> int:
        return self._nodes[node].busy

    def capacity_of(self, node: str) -> int:
        return self._nodes[node].capacity

    @property
    def nodes(self) -> list[str]:
        return list(self._nodes)

    @property
    def capacity(self) -> int:
        return sum(n.capacity for n in self._nodes.values())

    def __contains__(self, node: object) -> bool:
        return node in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A Ray node as ray.nodes() shows it: its id, the label its series carry, its CPUs."""

    node_id: str
    label: str
    cpus: float


def alive_nodes(listing: list[dict]) -> list[NodeInfo]:
    """The nodes that can take an actor: alive and declaring CPUs. Labelled by node name (its IP
    unless `ray start --node-name`), with the id's head added where two nodes share a name."""
    usable = [n for n in listing if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    names = [n.get("NodeName") or n.get("NodeManagerAddress", "?") for n in usable]
    return [
        NodeInfo(
            n["NodeID"],
            name if names.count(name) == 1 else f"{name}~{n['NodeID'][:8]}",
            n["Resources"]["CPU"],
        )
        for n, name in zip(usable, names)
    ]
