"""Roles: names, the hierarchy (``eng/ml`` is a sub-role of ``eng``) and its DRF order. Pure.

``RoleTree`` orders roles level by level (Mesos's hierarchical sorter): the children of each
node are ordered by their weighted dominant share, where a role's allocation counts every
sub-role's; a role that has both frameworks of its own and sub-roles takes part at its own level
as the virtual child ``"."`` (its own allocation). Only *active* roles (roles with a framework
that may be offered resources now, or with such a sub-role) appear in the order.

Each level is a ``DRFSorter`` of the node's children, so an allocation costs one incremental
update per level of the role's path, never a re-sort.

Usage::

    tree = RoleTree()
    tree.add_total(Resources.parse("cpus:10;mem:100"))
    for role in ("eng/ml", "eng/web", "ops"):
        tree.add(role)
        tree.set_active(role, True)
    tree.allocated("eng/ml", "a1", Resources.parse("cpus:6"))   # eng: .6 at the top level
    assert tree.sorted_roles() == ["ops", "eng/web", "eng/ml"]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mensa.proto.resources import MILLI, UNRESERVED, Resources

from .sorter import DRFSorter

MAX_ROLE_LENGTH = 1024
OWN = "."  # the virtual child that stands for a role's own allocation among its sub-roles


def role_error(role: object, *, allow_star: bool = False) -> str | None:
    """Returns why ``role`` is not a valid role name (Mesos rules), or None when it is.

    Valid: ``/``-separated parts, none empty, ``.`` or ``..``, none starting with ``-``,
    without ``*``, whitespace or control characters. ``*`` (the default role, meaning
    unreserved) is valid only when ``allow_star``.
    """
    if not isinstance(role, str):
        return f"role must be a string, got {role!r}"
    if role == UNRESERVED:
        return None if allow_star else "role '*' is not allowed here (it means unreserved)"
    if not role or len(role) > MAX_ROLE_LENGTH:
        return f"role {role!r} is not a valid role name (empty or too long)"
    for part in role.split("/"):
        if part in ("", ".", "..") or part.startswith("-") or "*" in part \
                or any(ch.isspace() or ord(ch) < 32 or ch == "\x7f" for ch in part):
            return f"role {role!r} is not a valid role name"
    return None


def check_role(role: object, *, allow_star: bool = False) -> str:
    """Returns ``role`` when valid, else raises ValueError saying why."""
    error = role_error(role, allow_star=allow_star)
    if error is not None:
        raise ValueError(error)
    assert isinstance(role, str)
    return role


def is_subrole(role: str, ancestor: str) -> bool:
    """True when ``role`` is ``ancestor`` or below it (``eng/ml`` is below ``eng``).

    ``*`` is below nothing but itself.
    """
    return role == ancestor or (ancestor != UNRESERVED and role.startswith(ancestor + "/"))


def lineage(role: str) -> list[str]:
    """Returns ``role`` and its ancestors, nearest first: ``a/b/c`` -> ``[a/b/c, a/b, a]``."""
    out = [role]
    while "/" in role:
        role = role.rsplit("/", 1)[0]
        out.append(role)
    return out


@dataclass(slots=True)
class _Node:
    role: str  # full path ("" for the root)
    children: dict[str, _Node] = field(default_factory=dict)  # path part -> node
    sorter: DRFSorter | None = None  # clients: child parts (and OWN); None for a leaf
    own: bool = False  # a role registered with add() (frameworks may be allocated under it)
    own_active: bool = False
    active: bool = False  # own_active or any child active


class RoleTree:
    """Roles in a hierarchy, their weights and allocations, and the order to offer them in.

    Misuse (an unknown role, a role added twice) raises KeyError or ValueError.
    """

    __slots__ = ("_cache", "_nodes", "_root", "_total", "_weights")

    def __init__(self) -> None:
        self._root = _Node("", sorter=DRFSorter())
        self._nodes: dict[str, _Node] = {}
        self._weights: dict[str, float] = {}
        self._total: dict[str, int] = {}  # name -> thousandths
        self._cache: list[str] | None = None

    # -- roles --------------------------------------------------------------------------------

    def add(self, role: str) -> None:
        """Registers ``role`` (inactive, nothing allocated); creates its ancestors as needed."""
        node = self._nodes.get(role)
        if node is not None and node.own:
            raise ValueError(f"role {role!r} already exists")
        if node is None:
            node = self._make(role)
        node.own = True
        if node.sorter is not None:
            node.sorter.add(OWN, self.weight(role), active=False)
        self._cache = None

    def remove(self, role: str) -> None:
        """Unregisters ``role`` (its allocations must be gone); drops nodes left empty."""
        node = self._nodes[role]
        if not node.own:
            raise KeyError(role)
        self.set_active(role, False)
        node.own = False
        if node.sorter is not None and OWN in node.sorter:
            node.sorter.remove(OWN)
        self._prune(node)
        self._cache = None

    def __contains__(self, role: object) -> bool:
        node = self._nodes.get(role) if isinstance(role, str) else None
        return node is not None and node.own

    def roles(self) -> list[str]:
        """Returns every registered role."""
        return [r for r, n in self._nodes.items() if n.own]

    def set_weight(self, role: str, weight: float) -> None:
        """Sets ``role``'s weight (also before the role exists); 1.0 when never set."""
        self._weights[role] = weight
        node = self._nodes.get(role)
        if node is not None:
            self._parent_sorter(role).update_weight(_part(role), weight)
            if node.sorter is not None and OWN in node.sorter:
                node.sorter.update_weight(OWN, weight)
            self._cache = None

    def weight(self, role: str) -> float:
        return self._weights.get(role, 1.0)

    def set_active(self, role: str, active: bool) -> None:
        """Marks whether ``role`` has a framework that may be offered resources now."""
        node = self._nodes[role]
        if node.own_active == active:
            return
        node.own_active = active
        if node.sorter is not None:
            (node.sorter.activate if active else node.sorter.deactivate)(OWN)
        self._refresh(node)
        self._cache = None

    # -- allocations --------------------------------------------------------------------------

    def allocated(self, role: str, agent_id: str, resources: Resources) -> None:
        """Records ``resources`` on ``agent_id`` as allocated under ``role`` (and its ancestors)."""
        node = self._nodes[role]
        if node.sorter is not None:
            node.sorter.allocated(OWN, agent_id, resources)
        path = role
        while True:
            parent, part = _split(path)
            sorter = self._nodes[parent].sorter if parent else self._root.sorter
            assert sorter is not None
            sorter.allocated(part, agent_id, resources)
            if not parent:
                break
            path = parent
        self._cache = None

    def unallocated(self, role: str, agent_id: str, resources: Resources) -> None:
        """Takes ``resources`` on ``agent_id`` off ``role``'s allocation (and its ancestors')."""
        node = self._nodes[role]
        if node.sorter is not None:
            node.sorter.unallocated(OWN, agent_id, resources)
        path = role
        while True:
            parent, part = _split(path)
            sorter = self._nodes[parent].sorter if parent else self._root.sorter
            assert sorter is not None
            sorter.unallocated(part, agent_id, resources)
            if not parent:
                break
            path = parent
        self._cache = None

    def add_total(self, resources: Resources) -> None:
        for sorter in self._sorters():
            sorter.add_total(resources)
        for name, milli in resources.quantities().items():
            self._total[name] = self._total.get(name, 0) + milli
        self._cache = None

    def remove_total(self, resources: Resources) -> None:
        for sorter in self._sorters():
            sorter.remove_total(resources)
        for name, milli in resources.quantities().items():
            left = self._total.get(name, 0) - milli
            if left > 0:
                self._total[name] = left
            else:
                self._total.pop(name, None)
        self._cache = None

    def totals(self) -> dict[str, float]:
        """Returns the pool's scalars, e.g. ``{"cpus": 10.0, "mem": 100.0}`` (a copy)."""
        return {name: milli / MILLI for name, milli in self._total.items()}

    # -- the answer ---------------------------------------------------------------------------

    def sorted_roles(self) -> list[str]:
        """Returns the active roles in the order they should be offered resources (cached)."""
        if self._cache is None:
            out: list[str] = []
            self._walk(self._root, out)
            self._cache = out
        return self._cache

    def share(self, role: str) -> float:
        """Returns ``role``'s weighted dominant share at its level (counting sub-roles)."""
        if role not in self._nodes:
            return 0.0
        return self._parent_sorter(role).share(_part(role))

    def consumed(self, role: str) -> dict[str, int]:
        """Returns what ``role`` and its sub-roles hold, per scalar name, in thousandths."""
        if role not in self._nodes:
            return {}
        return self._parent_sorter(role).scalars(_part(role))

    def allocation(self, role: str) -> dict[str, Resources]:
        """Returns what ``role`` and its sub-roles hold, per agent id."""
        if role not in self._nodes:
            return {}
        return self._parent_sorter(role).allocation(_part(role))

    # -- internals ----------------------------------------------------------------------------

    def _walk(self, node: _Node, out: list[str]) -> None:
        assert node.sorter is not None
        for part in node.sorter.iter_sorted():
            if part == OWN:
                out.append(node.role)
                continue
            child = node.children[part]
            if child.sorter is None:
                out.append(child.role)
            else:
                self._walk(child, out)

    def _make(self, role: str) -> _Node:
        parent_role, part = _split(role)
        parent = self._root if not parent_role else (
            self._nodes.get(parent_role) or self._make(parent_role))
        if parent.sorter is None:  # a leaf becomes an inner node: its own part moves to OWN
            parent.sorter = DRFSorter(total=self.totals())
            if parent.own:
                grand = self._parent_sorter(parent.role)
                parent.sorter.add(OWN, self.weight(parent.role), active=parent.own_active)
                for agent_id, resources in grand.allocation(_part(parent.role)).items():
                    parent.sorter.allocated(OWN, agent_id, resources)
        node = _Node(role)
        parent.children[part] = node
        self._nodes[role] = node
        parent.sorter.add(part, self.weight(role), active=False)
        return node

    def _prune(self, node: _Node) -> None:
        while node is not self._root and not node.own and not node.children:
            parent_role, part = _split(node.role)
            parent = self._nodes[parent_role] if parent_role else self._root
            assert parent.sorter is not None
            parent.sorter.remove(part)
            del parent.children[part]
            del self._nodes[node.role]
            node = parent

    def _refresh(self, node: _Node) -> None:
        """Recomputes ``active`` from ``node`` up, updating each parent's sorter."""
        while node is not self._root:
            active = node.own_active or any(c.active for c in node.children.values())
            if active == node.active:
                return
            node.active = active
            sorter = self._parent_sorter(node.role)
            (sorter.activate if active else sorter.deactivate)(_part(node.role))
            parent_role, _ = _split(node.role)
            node = self._nodes[parent_role] if parent_role else self._root

    def _parent_sorter(self, role: str) -> DRFSorter:
        parent_role, _ = _split(role)
        sorter = self._nodes[parent_role].sorter if parent_role else self._root.sorter
        assert sorter is not None
        return sorter

    def _sorters(self) -> list[DRFSorter]:
        out = [self._root.sorter] + [n.sorter for n in self._nodes.values()]
        return [s for s in out if s is not None]


def _split(role: str) -> tuple[str, str]:
    """``a/b/c`` -> (``a/b``, ``c``); ``a`` -> (``""``, ``a``)."""
    if "/" not in role:
        return "", role
    parent, part = role.rsplit("/", 1)
    return parent, part


def _part(role: str) -> str:
    return _split(role)[1]
