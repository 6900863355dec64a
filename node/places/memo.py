"""Printed places answers kept for a provider whose answer depends on the query alone.

The offline provider searches data that never changes while the node runs, so a WHATSAT
asked again for the same spot, radius and bound gets the same JSON: a client polling, a
dashboard's probe, a read of pipelined WHATSATs, many clients in one place. Its body is
printed once and kept. Google's answers are not kept: they change, and Google's terms limit
caching them.
"""

from __future__ import annotations

from typing import Any

MEMO_SIZE = 256  # bodies kept; a body is 0.2-6 KB (bound 1-20), so at most about 1.5 MB

Query = tuple[bytes, float, int]  # the record's location as sent, radius km, bound
Answer = tuple[bytes, str]  # the printed body, the response's status


def remembers(provider: object) -> bool:
    """Whether `provider` says the same query always gets the same answer."""
    return getattr(provider, "answers_are_fixed", False) is True


class PlacesMemo:
    """The last MEMO_SIZE answers of one provider, the oldest dropped first."""

    __slots__ = ("_answers", "provider", "size")

    def __init__(self, provider: Any, size: int = MEMO_SIZE) -> None:
        self.provider = provider
        self.size = size
        self._answers: dict[Query, Answer] = {}

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, query: Query) -> Answer | None:
        return self._answers.get(query)

    def keep(self, query: Query, answer: Answer) -> None:
        answers = self._answers
        if len(answers) >= self.size:
            del answers[next(iter(answers))]
        answers[query] = answer
