"""Which relay to join, and when to move to another: pure logic, time passed in.

Every candidate has a smoothed RTT (an exponentially weighted mean of its measurements: pings on
the link the node holds, a short probe link to the others) and, from DNS-SD, a priority and a
weight. The score of a measured candidate is its smoothed RTT times a load factor from its SRV
weight, `1 + weight_penalty * (1 - weight / highest weight)` among the candidates of its
priority: a relay the dashboard gave half the weight of the others counts as 1.5 times as far.
Lower priority wins first (RFC 2782), then the lower score.

- **Joining** (at start, and after the relay failed): the best candidate that is not waiting out
  a failure; unmeasured candidates only when none is measured.
- **Moving while linked** (hysteresis): only when another candidate is *clearly* better - a
  lower priority, or a score lower by `switch_margin` (a fraction) and by `switch_min_gain`
  seconds - at every evaluation for `switch_after` seconds, over at least `switch_min_samples` of
  its measurements. Jitter that makes the two cross now and then resets the clock, so the
  choice does not flap.
- **Failures**: a candidate that could not be reached, refused the handshake, or went silent
  waits out an exponential backoff with full jitter (plus up to `retry_min` more, so even the
  first retries of many nodes spread out) before it is chosen again (unless nothing
  else is left, then the node waits for the earliest).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from altmesh.backoff import Backoff
from altmesh.client.candidates import RelayCandidate


@dataclass(frozen=True)
class SelectionPolicy:
    switch_margin: float = 0.3
    switch_min_gain: float = 0.005
    switch_after: float = 60.0
    switch_min_samples: int = 3
    weight_penalty: float = 1.0
    smoothing: float = 0.3  # the weight of a new measurement in the smoothed RTT
    retry_min: float = 0.5  # backoff of a failed candidate: first window ...
    retry_max: float = 30.0  # ... doubling up to this


@dataclass
class CandidateState:
    """What the selector knows of one candidate."""

    candidate: RelayCandidate
    order: int  # position in the candidate list (configured relays first)
    backoff: Backoff
    rtt: float | None = None  # smoothed
    last_rtt: float | None = None
    handshake_rtt: float | None = None  # connect + link handshake, of the last probe or join
    samples: int = 0
    measured_at: float | None = None
    failures: int = 0
    retry_at: float = 0.0
    last_failure: str | None = None


@dataclass(frozen=True)
class Choice:
    candidate: RelayCandidate
    reason: str
    switch: bool = False  # a move from a working relay (make-before-break), not a (re)join


@dataclass
class _Contender:
    key: bytes
    since: float
    samples_at_start: int


class RelaySelector:
    """The candidates, what was measured of each, the current relay and why it was chosen."""

    def __init__(self, policy: SelectionPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.rng = rng or random.Random()
        self.current: bytes | None = None
        self.current_reason = ""
        self.joined_at: float | None = None
        self._states: dict[bytes, CandidateState] = {}
        self._listed: set[bytes] = set()
        self._contender: _Contender | None = None

    # ------------------------------------------------------------------ what is known

    def update_candidates(self, candidates: Sequence[RelayCandidate]) -> None:
        """The candidate list changed (start, DNS refresh): keep what is known of each relay.
        The current relay stays known even when it left the list (it is not chosen again)."""
        states: dict[bytes, CandidateState] = {}
        for order, candidate in enumerate(candidates):
            state = self._states.get(candidate.key)
            if state is None:
                state = CandidateState(
                    candidate,
                    order,
                    Backoff(self.policy.retry_min, self.policy.retry_max, self.rng),
                )
            state.candidate, state.order = candidate, order
            states[candidate.key] = state
        if self.current is not None and self.current not in states:
            kept = self._states.get(self.current)
            if kept is not None:
                kept.order = len(states)
                states[self.current] = kept
        self._listed = {candidate.key for candidate in candidates}
        self._states = states

    @property
    def candidates(self) -> list[RelayCandidate]:
        return [state.candidate for state in self._ordered_states()]

    def state(self, key: bytes) -> CandidateState:
        return self._states[key]

    def record_rtt(self, key: bytes, rtt: float, now: float) -> None:
        state = self._states.get(key)
        if state is None:
            return
        alpha = self.policy.smoothing
        state.rtt = rtt if state.rtt is None else (1 - alpha) * state.rtt + alpha * rtt
        state.last_rtt = rtt
        state.samples += 1
        state.measured_at = now

    def record_handshake(self, key: bytes, seconds: float) -> None:
        state = self._states.get(key)
        if state is not None:
            state.handshake_rtt = seconds

    def record_success(self, key: bytes) -> None:
        """A link to the candidate came up: its failures are forgotten."""
        state = self._states.get(key)
        if state is not None:
            state.backoff.reset()
            state.failures = 0
            state.retry_at = 0.0
            state.last_failure = None

    def record_failure(self, key: bytes, now: float, what: str) -> float:
        """The candidate failed (`what` says how); returns how long it now waits."""
        state = self._states.get(key)
        if state is None:
            return 0.0
        # Full jitter from the first retry on (the backoff's first window is a single point),
        # so nodes that lost one relay together do not come back together.
        delay = state.backoff.next_delay() + self.rng.uniform(0, self.policy.retry_min)
        state.failures += 1
        state.retry_at = now + delay
        state.last_failure = what
        if self._contender is not None and self._contender.key == key:
            self._contender = None
        return delay

    def joined(self, key: bytes, now: float, reason: str) -> None:
        self.current = key
        self.current_reason = reason
        self.joined_at = now
        self._contender = None

    def left(self) -> None:
        self.current = None
        self.current_reason = ""
        self.joined_at = None
        self._contender = None

    # ------------------------------------------------------------------ scores

    def _ordered_states(self) -> list[CandidateState]:
        return sorted(self._states.values(), key=lambda state: state.order)

    def _priority(self, state: CandidateState) -> int:
        """A configured relay that DNS does not list counts as one of the best priority."""
        if state.candidate.priority is not None:
            return state.candidate.priority
        listed = [s.candidate.priority for s in self._states.values()]
        return min((p for p in listed if p is not None), default=0)

    def _load_factor(self, state: CandidateState) -> float:
        priority = self._priority(state)
        weights = [
            s.candidate.weight
            for s in self._states.values()
            if s.candidate.weight is not None and self._priority(s) == priority
        ]
        highest = max(weights, default=0)
        weight = state.candidate.weight
        if weight is None or highest <= 0:
            return 1.0
        return 1.0 + self.policy.weight_penalty * (1.0 - weight / highest)

    def score(self, state: CandidateState) -> float | None:
        if state.rtt is None:
            return None
        return state.rtt * self._load_factor(state)

    def _rank_key(self, state: CandidateState) -> tuple[int, int, float, int]:
        score = self.score(state)
        return (
            self._priority(state),
            0 if score is not None else 1,
            score if score is not None else 0.0,
            state.order,
        )

    def _usable(self, state: CandidateState, now: float) -> bool:
        return state.retry_at <= now and (
            state.candidate.key in self._listed or state.candidate.key == self.current
        )

    # ------------------------------------------------------------------ decisions

    def choose(self, now: float, *, avoid: bytes | None = None) -> Choice | None:
        """The candidate to join now (`avoid`: not this one, unless it is the only one left);
        None when every candidate waits out a failure (see `next_retry`)."""
        usable = [
            s for s in self._states.values() if self._usable(s, now) and s.candidate.key != avoid
        ]
        fallback = self._states.get(avoid) if avoid is not None else None
        if not usable and fallback is not None and self._usable(fallback, now):
            usable = [fallback]
        if not usable:
            return None
        usable.sort(key=self._rank_key)
        best = usable[0]
        return Choice(best.candidate, self._why(best, usable))

    def next_retry(self, now: float) -> float | None:
        """When the first candidate that waits out a failure may be tried again."""
        waiting = [s.retry_at for s in self._states.values() if s.candidate.key in self._listed]
        return min(waiting, default=None)

    def consider_switch(self, now: float) -> Choice | None:
        """While linked: a candidate that has been clearly better for long enough, or None."""
        if self.current is None or self.current not in self._states:
            return None
        current = self._states[self.current]
        others = [
            s
            for s in self._states.values()
            if s.candidate.key != self.current and self._usable(s, now) and s.rtt is not None
        ]
        if not others:
            self._contender = None
            return None
        others.sort(key=self._rank_key)
        best = others[0]
        why = self._clearly_better(best, current)
        if why is None:
            self._contender = None
            return None
        contender = self._contender
        if contender is None or contender.key != best.candidate.key:
            self._contender = _Contender(best.candidate.key, now, best.samples)
            return None
        lasted = now - contender.since
        if (
            lasted < self.policy.switch_after
            or best.samples - contender.samples_at_start < self.policy.switch_min_samples
        ):
            return None
        return Choice(best.candidate, f"{why} for {lasted:.0f} s", switch=True)

    def _clearly_better(self, other: CandidateState, current: CandidateState) -> str | None:
        if self._priority(other) < self._priority(current):
            return (
                f"{other.candidate.name} has SRV priority {self._priority(other)}, better than "
                f"{current.candidate.name}'s {self._priority(current)}"
            )
        if self._priority(other) > self._priority(current):
            return None
        other_score, current_score = self.score(other), self.score(current)
        if other_score is None:
            return None
        if current_score is None:
            return None  # nothing measured on the current link yet: no basis to move
        gain = current_score - other_score
        if (
            other_score <= current_score * (1 - self.policy.switch_margin)
            and gain >= self.policy.switch_min_gain
        ):
            return (
                f"{other.candidate.name} scores {_ms(other_score)} against "
                f"{current.candidate.name}'s {_ms(current_score)}"
            )
        return None

    def _why(self, best: CandidateState, usable: list[CandidateState]) -> str:
        measured = [s for s in usable if s.rtt is not None]
        if len(usable) == 1:
            return f"the only relay available of {len(self._listed) or 1}"
        if not measured:
            return "no relay measured yet: the first in order (configured relays first)"
        parts = [f"lowest score {_ms(self.score(best) or 0.0)}"]
        parts.append(f"(RTT {_ms(best.rtt or 0.0)}")
        factor = self._load_factor(best)
        parts[-1] += f", load factor {factor:.2f})" if factor != 1.0 else ")"
        same_priority = [s for s in measured if self._priority(s) == self._priority(best)]
        parts.append(f"of {len(same_priority)} measured relays")
        if best.candidate.priority is not None and len(same_priority) < len(measured):
            parts.append(f"at SRV priority {best.candidate.priority}")
        return " ".join(parts)

    # ------------------------------------------------------------------ status

    def snapshot(self, now: float) -> list[dict[str, Any]]:
        """Every candidate for `altmesh status` and the status page, best first."""
        rows = []
        for state in sorted(self._states.values(), key=self._rank_key):
            candidate = state.candidate
            score = self.score(state)
            if candidate.key == self.current:
                condition = "current"
            elif state.retry_at > now:
                condition = f"failed ({state.last_failure}); retry in {state.retry_at - now:.1f} s"
            elif state.last_failure is not None:
                condition = f"failed ({state.last_failure}); to be tried again"
            elif state.rtt is None:
                condition = "not measured yet"
            else:
                condition = "standby"
            rows.append(
                {
                    "name": candidate.name,
                    "public_key": candidate.key_b64,
                    "endpoints": [str(endpoint) for endpoint in candidate.endpoints],
                    "source": candidate.sources,
                    "priority": candidate.priority,
                    "weight": candidate.weight,
                    "rtt_ms": _round_ms(state.rtt),
                    "last_rtt_ms": _round_ms(state.last_rtt),
                    "handshake_ms": _round_ms(state.handshake_rtt),
                    "score_ms": _round_ms(score),
                    "samples": state.samples,
                    "failures": state.failures,
                    "state": condition,
                    "current": candidate.key == self.current,
                }
            )
        return rows


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _round_ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
