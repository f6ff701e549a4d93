"""Is a TDSP's new plan list believable? Its plan count against the last accepted answer.

An upstream bug (a truncated page, a filter dropped) does not look like an error: it is a
200 with valid JSON holding 1 plan instead of 118, or 28,575 instead of 118. Published, it
would deactivate the TDSP's plans or bury its cities' pages. So a fresh answer is compared
with the last answer the warehouse accepted for that TDSP (the plans stamped with its latest
`last_seen_at`; not its active plans, which may also hold vanished plans that cities outside
a partial refresh still list), and refused when the count moves past these bounds:

- a drop: fewer than MIN_RATIO (half) of the previous count;
- a jump: more than MAX_RATIO (three times) the previous count;

unless the change is small in absolute terms (at most MIN_CHANGE plans either way), so a
TDSP with 4 plans may go to 1 or 12. A TDSP with no accepted plans yet accepts any count.

A refused TDSP fails its cities with the reason and keeps its previous plans. `--force`
(which only bypasses the cache) does not override this; `--accept-plan-count-change` (run
config `accept_plan_count_change: true`) does, for a change an engineer has confirmed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from choosemypower_dagster.warehouse import schema as t

OVERRIDE_FLAG = "--accept-plan-count-change"
OVERRIDE_CONFIG = "accept_plan_count_change"


@dataclass(frozen=True)
class PlanCountBounds:
    """How far a TDSP's plan count may move from the last accepted answer in one refresh."""

    min_ratio: float = 0.5
    max_ratio: float = 3.0
    min_change: int = 10

    def problem(self, previous: int, new: int) -> str | None:
        """Why `new` plans after `previous` accepted ones is implausible, or None."""
        if previous <= 0 or abs(new - previous) <= self.min_change:
            return None
        if new < previous * self.min_ratio:
            return (
                f"the API returned {new} plan(s), {previous - new} fewer than the {previous} "
                f"accepted last time (a drop below {self.min_ratio:.0%} of them)"
            )
        if new > previous * self.max_ratio:
            return (
                f"the API returned {new} plans, {new / previous:.1f} times the {previous} "
                f"accepted last time (more than {self.max_ratio:g} times)"
            )
        return None


BOUNDS = PlanCountBounds()


def refusal_reason(problem: str) -> str:
    """The failed cities' reason for a refused plan count: what, what was kept, how to accept."""
    return (
        f"{problem}; refused as implausible, the previous plans are kept. If the change is "
        f"real, refresh with {OVERRIDE_FLAG} (run config {OVERRIDE_CONFIG}: true)"
    )


def accepted_plan_counts(conn: sa.Connection, duns_list: Iterable[str]) -> dict[str, int]:
    """Plans in each TDSP's last accepted answer: those stamped with its latest `last_seen_at`.

    Every plan of an accepted answer is written with the same `last_seen_at`, so the plans
    carrying a TDSP's newest stamp are exactly its last accepted list.
    """
    plans = t.electricity_plans
    wanted = sorted(set(duns_list))
    if not wanted:
        return {}
    latest = (
        sa.select(plans.c.tdsp_duns, sa.func.max(plans.c.last_seen_at).label("seen"))
        .where(plans.c.tdsp_duns.in_(wanted))
        .group_by(plans.c.tdsp_duns)
        .subquery()
    )
    query = (
        sa.select(plans.c.tdsp_duns, sa.func.count())
        .join(
            latest,
            sa.and_(latest.c.tdsp_duns == plans.c.tdsp_duns, latest.c.seen == plans.c.last_seen_at),
        )
        .group_by(plans.c.tdsp_duns)
    )
    return {duns: int(count) for duns, count in conn.execute(query)}
