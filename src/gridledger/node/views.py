"""JSON views of chain state that the API serves: the DSO policy timeline (``/v1/policy``)."""

from __future__ import annotations

from gridledger.ledger.kinds.dso_policy import DsoPolicy, MeterLimits
from gridledger.ledger.state import LedgerState


def _limits(lim: MeterLimits | None) -> dict | None:
    if lim is None:
        return None
    return {"max_epa_w": lim.max_epa_w, "max_eca_w": lim.max_eca_w, "credit_fa": lim.credit_fa}


def _policy(p: DsoPolicy, start: int, slot_s: int, height: int | None, current: int) -> dict:
    return {
        "nonce": p.nonce,
        "txid": p.txid.hex(),
        "height": height,
        "effective_slot": p.effective_slot,
        "effective_time": start + p.effective_slot * slot_s,
        "in_force": p.effective_slot <= current,
        "prices": list(p.prices) if p.prices is not None else None,
        "authorize": [{"meter": m, "pubkey": k.hex()} for m, k in p.authorize],
        "limits": [{"meter": lim.meter, **_limits(lim)} for lim in p.limits],
        "ban": list(p.ban),
    }


def policy_view(state: LedgerState, now: int, heights: dict[bytes, int]) -> dict:
    """The chain's clock (start time and slot length in s, the slot of Unix time ``now``), its committed DSO
    policies in commit order (with the height that committed each, from ``heights``), and what is in force at the
    current slot: the prices (minor units per kWh) and every meter any policy named, with its status and limits."""
    g = state.genesis
    current = max(0, (now - g.start_time) // g.slot_seconds)
    timeline = state.policy
    meters = sorted({m for p in timeline.policies for m in [*(a for a, _ in p.authorize), *p.ban]})
    in_force = []
    for m in meters:
        status, key = timeline.status(m, current)
        in_force.append(
            {
                "meter": m,
                "status": status,
                "pubkey": key.hex() if key else None,
                "limits": _limits(timeline.limits(m, current)),
            }
        )
    prices = timeline.prices(current)
    return {
        "chain_id": state.chain_id.hex(),
        "start_time": g.start_time,
        "slot_seconds": g.slot_seconds,
        "current_slot": current,
        "nonce": timeline.nonce,
        "policies": [_policy(p, g.start_time, g.slot_seconds, heights.get(p.txid), current) for p in timeline.policies],
        "in_force": {"slot": current, "prices": list(prices) if prices else None, "meters": in_force},
    }
