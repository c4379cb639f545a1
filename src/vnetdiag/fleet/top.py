"""The worst drop places of the fleet, from Prometheus' HTTP API.

    places = top(prometheus="http://prom:9090", limit=10)
    places[0].host, places[0].device, places[0].reason, places[0].rate_per_s

The query is the ranking of contrib/prometheus/vnetdiag-fleet.rules.yml written
out (so it works before those rules are loaded): the rate of
``vnetdiag_kernel_drops_total`` per host, namespace, device and reason, top k.
The peer-deviation alert's state comes from ``/api/v1/alerts``.
"""

from __future__ import annotations

import json
import shlex
import urllib.error
import urllib.parse
import urllib.request

from vnetdiag.errors import BadInputError, UsageError
from vnetdiag.model.fleet import DropPlace, FleetAlert

ALERT = "VnetdiagHostDropsDepartFromPeers"
_TIMEOUT_S = 10.0


def ranking_query(limit: int, window: str) -> str:
    return (f"topk({limit}, sum by (host, instance, role, netns, device, reason) "
            f"(rate(vnetdiag_kernel_drops_total[{window}])) > 0)")


def _get(base: str, path: str, params: dict | None = None) -> dict:
    url = base.rstrip("/") + path + ("?" + urllib.parse.urlencode(params) if params else "")
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp:  # noqa: S310 - the user's Prometheus URL
            doc = json.load(resp)
    except urllib.error.HTTPError as exc:
        try:
            why = json.load(exc).get("error", exc.reason)
        except ValueError:
            why = exc.reason
        raise BadInputError(f"Prometheus at {base} refused the query: {why}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BadInputError(f"cannot reach Prometheus at {base}: {reason}",
                            hint="give its base URL, e.g. --prometheus http://127.0.0.1:9090") from None
    except ValueError:
        raise BadInputError(f"{base} did not answer with JSON: is it Prometheus?") from None
    if doc.get("status") != "success":
        raise BadInputError(f"Prometheus at {base}: {doc.get('error', 'query failed')}")
    return doc["data"]


def places_of(data: dict) -> list[DropPlace]:
    """DropPlaces from an instant query's vector result, worst first (pure)."""
    out = []
    for s in data.get("result", []):
        m = s["metric"]
        out.append(DropPlace(host=m.get("host") or m.get("instance", "?"), role=m.get("role", ""),
                             netns=m.get("netns", ""), device=m.get("device", ""), reason=m.get("reason", ""),
                             rate_per_s=float(s["value"][1])))
    out.sort(key=lambda p: -p.rate_per_s)
    return out


def alerts_of(data: dict) -> list[FleetAlert]:
    out = []
    for a in data.get("alerts", []):
        if a["labels"].get("alertname") != ALERT:
            continue
        try:
            value = float(a.get("value"))
        except (TypeError, ValueError):
            value = None
        out.append(FleetAlert(name=ALERT, host=a["labels"].get("host") or a["labels"].get("instance", "?"),
                              state=a.get("state", "?"), value=value))
    return out


def top(*, prometheus: str, limit: int = 10, window: str = "5m") -> tuple[list[DropPlace], list[FleetAlert]]:
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    if not prometheus.startswith(("http://", "https://")):
        raise UsageError(f"--prometheus {prometheus}: not an http(s) URL", hint="e.g. http://127.0.0.1:9090")
    data = _get(prometheus, "/api/v1/query", {"query": ranking_query(limit, window)})
    alerts = alerts_of(_get(prometheus, "/api/v1/alerts"))
    return places_of(data), alerts


def next_commands(place: DropPlace, *, hosts_file: str | None = None) -> list[str]:
    """What to run for a place: the live drop view on its host, and a diagnose across it."""
    hosts = f" --hosts {shlex.quote(hosts_file)}" if hosts_file else ""
    # With the hosts file, the drops view goes through the same agent as diagnose (HOST:NS forms).
    drops = (f"vnetdiag drops{hosts} --netns {shlex.quote(f'{place.host}:{place.netns}')} --duration 10"
             if hosts_file else f"ssh {shlex.quote(place.host)} vnetdiag drops --netns {shlex.quote(place.netns)}")
    return [drops,
            f"vnetdiag diagnose{hosts} --from {place.host}:{place.netns} --to PEER:NAMESPACE "
            f"  # a peer whose traffic crosses {place.device}"]
