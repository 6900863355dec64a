"""A client's replies in the order of its lines, while some are still being computed."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast


class ReplyQueue:
    """Replies in line order: bytes ready to send, or a task still computing one (a
    WHATSAT waiting for its places). Only the ready head of the queue may be written."""

    __slots__ = ("_items", "_tasks")

    def __init__(self) -> None:
        self._items: deque[bytes | asyncio.Task[bytes]] = deque()
        self._tasks = 0  # how many of the items are tasks

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def append(self, reply: bytes | asyncio.Task[bytes]) -> None:
        if not isinstance(reply, bytes):
            self._tasks += 1
        self._items.append(reply)

    def extend(self, replies: list[bytes]) -> None:
        self._items.extend(replies)

    def take_ready(self) -> list[bytes]:
        """Remove and return the replies at the head that are ready, in order; a reply
        whose task was cancelled is skipped."""
        items = self._items
        if not self._tasks:  # every reply is bytes
            ready = cast(list[bytes], list(items))
            items.clear()
            return ready
        ready = []
        while items:
            head = items[0]
            if not isinstance(head, bytes):
                if not head.done():
                    break
                self._tasks -= 1  # counted out before result() can raise
                items.popleft()
                if not head.cancelled():
                    ready.append(head.result())
                continue
            ready.append(head)
            items.popleft()
        return ready

    def drop(self) -> int:
        """Forget every reply, cancelling the tasks still computing one; how many were
        dropped."""
        dropped = len(self._items)
        for item in self._items:
            if isinstance(item, asyncio.Task):
                item.cancel()
        self._items.clear()
        self._tasks = 0
        return dropped
