"""Group commit: every ``put`` that arrives while a commit is on disk joins the next one.

Under load many ingest requests share one transaction and one fsync; an idle
forwarder still commits a lone alert at once, at the end of the loop
iteration it arrived in. The transaction itself (``commit``) runs on the
queue thread and is the queue's, alert-state decisions included; this class
only gathers, hands over and answers each put with its own
:class:`~forwarder.queue.contract.PutResult`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor

from forwarder.queue.contract import PutResult
from forwarder.queue.errors import QueueUnavailable
from forwarder.queue.putting import Pending


class GroupCommit:
    """Gathers puts on the event loop; ``commit(batch)`` stores a batch on the queue thread.

    ``commit`` returns one :class:`PutResult` per put of the batch, in order.
    ``reserved_count``/``reserved_bytes`` are the alerts handed in but not yet
    committed, which the capacity check counts. ``on_commit(targets)`` runs on
    the loop after each successful commit, with the targets of the puts that
    queued something (a group of suppressed repeats wakes no sender).
    """

    def __init__(
        self,
        executor: Callable[[], Executor | None],
        commit: Callable[[Sequence[Pending]], list[PutResult]],
        on_commit: Callable[[set[str]], None],
    ) -> None:
        self._executor = executor
        self._commit = commit
        self._on_commit = on_commit
        self._pending: list[Pending] = []
        self._committing = False
        self._drained: asyncio.Future[None] | None = None
        self.reserved_count = 0
        self.reserved_bytes = 0

    def add(self, loop: asyncio.AbstractEventLoop, pending: Pending) -> None:
        """Reserve room for ``pending`` and schedule a commit unless one is under way."""
        self.reserved_count += len(pending.items)
        self.reserved_bytes += pending.size
        # If the waiter goes away (client disconnect), the items are committed
        # anyway: they are in the pending list already; only the waiting stops.
        self._pending.append(pending)
        if not self._committing:
            # Start at the end of this loop iteration, so every request whose
            # body already arrived joins the same commit.
            self._committing = True
            loop.call_soon(self._start, loop)

    async def drain(self) -> None:
        """Wait until nothing is pending or being committed."""
        if self._committing or self._pending:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand everything pending to the queue thread as one transaction."""
        batch, self._pending = self._pending, []
        executor = self._executor()
        if executor is None:  # closed under our feet: fail the waiters, commit nothing
            self._done(batch, [], QueueUnavailable("queue is closed"))
            return
        try:
            # ``executor.submit`` plus one ``call_soon_threadsafe`` back, rather
            # than ``run_in_executor`` and a flusher task: a group commit costs
            # the event loop one callback, whatever the number of requests in it.
            executor.submit(self._on_thread, loop, batch)
        except RuntimeError:  # the executor is shutting down
            self._done(batch, [], QueueUnavailable("queue is closed"))

    def _on_thread(self, loop: asyncio.AbstractEventLoop, batch: list[Pending]) -> None:
        error: BaseException | None = None
        results: list[PutResult] = []
        try:
            results = self._commit(batch)
        except QueueUnavailable as exc:
            error = exc
        except BaseException as exc:
            error = QueueUnavailable(f"queue commit failed: {exc!r}")
        loop.call_soon_threadsafe(self._done, batch, results, error)

    def _done(
        self, batch: list[Pending], results: list[PutResult], error: BaseException | None
    ) -> None:
        """On the event loop: answer the waiters of one group commit, start the next."""
        targets: set[str] = set()
        for n, p in enumerate(batch):
            self.reserved_count -= len(p.items)
            self.reserved_bytes -= p.size
            if error is None and results[n].queued:
                for i in p.items:
                    targets.add(i.target)
            if not p.fut.done():
                if error is None:
                    p.fut.set_result(results[n])
                else:
                    p.fut.set_exception(QueueUnavailable(str(error)))
        if targets:
            self._on_commit(targets)
        if self._pending:
            # Requests that arrived during this commit go in the next one.
            loop = asyncio.get_running_loop()
            loop.call_soon(self._start, loop)
            return
        self._committing = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
