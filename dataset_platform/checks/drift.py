"""Drop-rate drift: does a stage drop a very different share of documents than last time?

A jump in the share a stage rejects is the first sign of a changed source (a redesigned site whose
pages now extract empty, a dump in another language) or of a changed rule. Compared between the
newest materialisation and the one before, on what each run processed.
"""

from __future__ import annotations

from dataclasses import dataclass

#: below this many documents in either run the shares are too noisy to compare
MIN_DOCUMENTS = 100


@dataclass(frozen=True)
class DropRateChange:
    comparable: bool
    ok: bool
    previous_rate: float | None
    rate: float | None
    change: float | None  # rate - previous_rate, in share points
    reason: str


def _rate(inp: int, rejected: int) -> float | None:
    return rejected / inp if inp else None


def drop_rate_change(previous: tuple[int, int] | None, current: tuple[int, int], max_change: float,
                     min_documents: int = MIN_DOCUMENTS) -> DropRateChange:
    """``previous`` / ``current``: (documents in, documents dropped) of a run (previous None: first run)."""
    rate = _rate(*current)
    if previous is None:
        return DropRateChange(False, True, None, rate, None, "first materialisation: nothing to compare with")
    prev_rate = _rate(*previous)
    if min(previous[0], current[0]) < min_documents:
        return DropRateChange(False, True, prev_rate, rate, None,
                              f"fewer than {min_documents} documents in one of the runs "
                              f"({previous[0]} then {current[0]}): shares too noisy to compare")
    change = rate - prev_rate
    ok = abs(change) <= max_change
    verdict = "within" if ok else "beyond"
    return DropRateChange(True, ok, prev_rate, rate, change,
                          f"dropped {rate:.1%} of {current[0]} documents, {prev_rate:.1%} of {previous[0]} last time: "
                          f"{change:+.1%}, {verdict} the allowed ±{max_change:.0%}")


@dataclass(frozen=True)
class ScoreShift:
    comparable: bool
    ok: bool
    distance: float | None  # total variation distance between the two histograms' shares, 0..1
    reason: str


def score_distribution_shift(previous: list[int] | None, current: list[int], max_shift: float,
                             min_documents: int = MIN_DOCUMENTS) -> ScoreShift:
    """Did the quality model's score histogram move? ``previous`` / ``current``: documents per score
    bin (the same bins) of two materialisations (previous None: first run). The distance is the
    total variation distance of the shares (half the sum of the absolute share changes: the share
    of documents that would have to move bins); above ``max_shift`` it fails. A new model, a
    changed source or a broken extraction all show here before anyone reads a document."""
    n = sum(current)
    if previous is None:
        return ScoreShift(False, True, None, "first materialisation with scores: nothing to compare with")
    m = sum(previous)
    if min(n, m) < min_documents or len(previous) != len(current):
        return ScoreShift(False, True, None, f"fewer than {min_documents} scored documents in one of the runs "
                                             f"({m} then {n}), or other bins: not compared")
    distance = 0.5 * sum(abs(a / n - b / m) for a, b in zip(current, previous))
    ok = distance <= max_shift
    return ScoreShift(True, ok, distance,
                      f"score histogram moved by {distance:.1%} of documents ({m} then {n} scored), "
                      f"{'within' if ok else 'beyond'} the allowed {max_shift:.0%}")
