"""A TDSP outage is one incident: "down" once, a reminder at most every few hours while it
lasts, "recovered" once (the rules and the messages, no Dagster).

A failed run names its failed TDSPs; the first failure of a TDSP opens its incident and is
posted, later failed runs of the same outage only update it (their count, the latest reason),
and the incident closes when one of its cities is refreshed after its latest failure: the
TDSP answered again. The state is plain JSON, kept by the caller (the Dagster instance).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

#: The reason of a TDSP shown in an alert is cut to this many characters.
REASON_CHARS = 300


def stamp(ts: float) -> str:
    """An epoch time as the alerts show it: ISO 8601 to the minute, UTC."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="minutes")


@dataclass
class Incident:
    """One TDSP's open outage."""

    duns: str
    name: str
    since: float  # the end of the first failed run of the outage
    last_failed_at: float  # the end of its latest failed run
    last_posted_at: float  # the latest "down" or reminder post
    cities: list[str]  # the TDSP's cities that kept their previous data
    reason: str
    run_id: str  # the latest failed run
    backfill_ranges: str = ""
    failed_runs: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self, kind: str, at: float | None = None) -> str:
        """The incident in one line: down, still down, or recovered at `at`."""
        kept = f"{len(self.cities)} cities kept their previous data"
        if kind == "down":
            return f"{self.name} down since {stamp(self.since)}: {kept}"
        if kind == "still_down":
            return (
                f"{self.name} still down since {stamp(self.since)} "
                f"({self.failed_runs} failed run(s)): {kept}"
            )
        return (
            f"{self.name} recovered at {stamp(at or self.last_failed_at)} "
            f"(down since {stamp(self.since)}; {kept} meanwhile)"
        )

    def summary(self) -> dict[str, Any]:
        """What an alert says about this TDSP: counts, reason, times."""
        return {
            "duns": self.duns,
            "name": self.name,
            "since": stamp(self.since),
            "cities_kept_previous": len(self.cities),
            "failed_runs": self.failed_runs,
            "reason": self.reason[:REASON_CHARS],
        }


def load(state: Mapping[str, Any]) -> dict[str, Incident]:
    """The open incidents from their stored JSON (unknown fields ignored)."""
    known = set(Incident.__dataclass_fields__)
    return {
        duns: Incident(**{k: v for k, v in value.items() if k in known})
        for duns, value in state.items()
        if isinstance(value, dict)
    }


def dump(incidents: Mapping[str, Incident]) -> dict[str, Any]:
    return {duns: asdict(incident) for duns, incident in sorted(incidents.items())}


def record_failure(
    incidents: dict[str, Incident],
    failed_tdsps: Mapping[str, str],
    failed_cities: Iterable[str],
    served: Mapping[str, set[str]],
    names: Mapping[str, str],
    run_id: str,
    backfill_ranges: str,
    now: float,
    remind_after_s: float,
) -> tuple[list[Incident], list[Incident]]:
    """Fold a failed run into the incidents: the TDSPs it opened (to post "down") and the open
    ones whose reminder is due (to post "still down"); the others are updated silently."""
    failed = set(failed_cities)
    opened: list[Incident] = []
    reminded: list[Incident] = []
    for duns, reason in sorted(failed_tdsps.items()):
        cities = sorted(failed & served.get(duns, set()))
        incident = incidents.get(duns)
        if incident is None:
            incident = Incident(
                duns=duns,
                name=names.get(duns, duns),
                since=now,
                last_failed_at=now,
                last_posted_at=now,
                cities=cities,
                reason=reason,
                run_id=run_id,
                backfill_ranges=backfill_ranges,
            )
            incidents[duns] = incident
            opened.append(incident)
            continue
        incident.last_failed_at = now
        incident.reason = reason
        incident.run_id = run_id
        incident.failed_runs += 1
        incident.cities = sorted(set(incident.cities) | set(cities))
        incident.backfill_ranges = backfill_ranges or incident.backfill_ranges
        if now - incident.last_posted_at >= remind_after_s:
            incident.last_posted_at = now
            reminded.append(incident)
    return opened, reminded


def due_reminders(
    incidents: Mapping[str, Incident], now: float, remind_after_s: float
) -> list[Incident]:
    """Open incidents not posted for `remind_after_s`: marked posted now, to be reminded."""
    due = [i for i in incidents.values() if now - i.last_posted_at >= remind_after_s]
    for incident in due:
        incident.last_posted_at = now
    return sorted(due, key=lambda i: i.duns)


def message(
    kind: str,
    incidents: list[Incident],
    run_id: str,
    run_url: str | None,
    at: float | None = None,
) -> dict[str, Any]:
    """The alert: `kind` is "down", "still_down" or "recovered"; short, one line per TDSP,
    the backfill text to paste, and the run (a link when the UI's address is known)."""
    ranges = sorted({i.backfill_ranges for i in incidents if i.backfill_ranges})
    payload: dict[str, Any] = {
        "event": f"tdsp_{kind}",
        "text": "; ".join(i.line(kind, at) for i in incidents),
        "tdsps": [i.summary() for i in incidents],
        "run_id": run_id,
    }
    if kind == "recovered":
        payload["recovered_at"] = stamp(at) if at is not None else None
    elif ranges:
        payload["backfill_ranges"] = ", ".join(ranges)
    if run_url:
        payload["run_url"] = run_url
    return payload
