"""What changed between two topology documents (vnetdiag.topology/1)."""

from __future__ import annotations

from dataclasses import dataclass

from vnetdiag.errors import BadInputError
from vnetdiag.topology.views import SCHEMA


@dataclass(frozen=True, kw_only=True, slots=True)
class TopologyDiff:
    appeared: tuple[str, ...]
    """Node labels only in the new topology."""
    disappeared: tuple[str, ...]
    edges_added: tuple[str, ...]
    edges_removed: tuple[str, ...]
    moved: tuple[str, ...]
    """MACs that the same bridge now learns on another port (a migration)."""

    def empty(self) -> bool:
        return not (self.appeared or self.disappeared or self.edges_added or self.edges_removed or self.moved)

    def document(self) -> dict:
        """The ``vnetdiag.topology-diff/1`` document."""
        return {"schema": "vnetdiag.topology-diff/1", "appeared": self.appeared, "disappeared": self.disappeared,
                "edges_added": self.edges_added, "edges_removed": self.edges_removed, "moved": self.moved}


def check(doc: object, source: str) -> dict:
    """Refuse anything that is not a topology document, in one line."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise BadInputError(f"{source} is not a {SCHEMA} document (found {found!r})",
                            hint="write one with: vnetdiag topology --json > OLD.json")
    for key in ("nodes", "edges"):
        if not isinstance(doc.get(key), list):
            raise BadInputError(f"{source}: '{key}' is missing or not a list", hint="regenerate it with --json")
    return doc


def _labels(doc: dict) -> dict[str, str]:
    ns = {n.get("netns_inode"): n.get("name") for n in doc["nodes"] if n.get("type") == "netns"}
    out = {}
    for n in doc["nodes"]:
        if n.get("type") == "interface":
            out[n["id"]] = f"{ns.get(n.get('netns_inode'), n.get('netns_inode'))}/{n.get('name')}"
        else:
            out[n["id"]] = str(n.get("name"))
    return out


def diff(old: dict, new: dict) -> TopologyDiff:
    lo, ln = _labels(old), _labels(new)

    def edge_set(doc, labels):
        return {f"{e.get('type')}: {labels.get(e['source'], e['source'])} -> {labels.get(e['target'], e['target'])}"
                for e in doc["edges"] if e.get("type") != "fdb"}

    def fdb_map(doc, labels):
        out = {}
        for e in doc.get("fdb", []):
            if e.get("bridge") and not e.get("local"):
                out[(labels.get(e["bridge"], e["bridge"]), e["mac"])] = labels.get(e["device"], e["device"])
        return out

    eo, en = edge_set(old, lo), edge_set(new, ln)
    fo, fn = fdb_map(old, lo), fdb_map(new, ln)
    moved = tuple(sorted(f"{mac} on {br}: {fo[(br, mac)]} -> {fn[(br, mac)]}"
                         for (br, mac) in fo.keys() & fn.keys() if fo[(br, mac)] != fn[(br, mac)]))
    # Compare by label: ids carry namespace inodes, which differ after a rebuild.
    so, sn = set(lo.values()), set(ln.values())
    return TopologyDiff(appeared=tuple(sorted(sn - so)), disappeared=tuple(sorted(so - sn)),
                        edges_added=tuple(sorted(en - eo)), edges_removed=tuple(sorted(eo - en)), moved=moved)
