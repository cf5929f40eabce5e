"""Run the blocking Consumer's rebalance callbacks in the thread that called poll().

The blocking :class:`kaflow.client.Consumer` runs its asynchronous twin on a
private loop thread. A listener callback run on that thread could not call
``consumer.commit()``: the blocking call would wait for the loop thread,
which waits for the callback. So a rebalance step on the loop hands each
callback to the calling thread through a queue and waits for its outcome,
while the calling thread runs the callback and can use the consumer freely.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import queue
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from kaflow.client.errors import IllegalStateError
from kaflow.client.rebalance import ListenerCallback, PartitionSet, call_listener

__all__ = ["CallerThreadCallbacks"]

T = TypeVar("T")


@dataclass
class _CallbackRequest:
    callback: ListenerCallback
    partitions: PartitionSet
    done: asyncio.Future[None]


# None marks the end of the blocking call; the queue belongs to one call.
_Channel = queue.Queue[_CallbackRequest | None]
_CHANNEL: contextvars.ContextVar[_Channel | None] = contextvars.ContextVar(
    "kaflow_callback_channel", default=None
)


class CallerThreadCallbacks:
    """Route listener callbacks of calls made through :meth:`run` to the calling thread."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        submit: Callable[[Coroutine[Any, Any, Any]], concurrent.futures.Future[Any]],
    ) -> None:
        self._loop = loop
        self._submit = submit
        self._local = threading.local()

    def in_callback(self) -> bool:
        """Return True when the current thread is running a listener callback."""
        return bool(getattr(self._local, "in_callback", False))

    async def invoke(self, callback: ListenerCallback, partitions: PartitionSet) -> None:
        """Hand ``callback`` to the thread of the current blocking call and await its outcome."""
        channel = _CHANNEL.get()
        if channel is None:
            # Not inside a call made through run(), so no thread waits for the callback.
            await call_listener(callback, partitions)
            return
        done: asyncio.Future[None] = self._loop.create_future()
        channel.put(_CallbackRequest(callback, partitions, done))
        await done

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and its listener callbacks in this thread."""
        if self.in_callback():
            coroutine.close()
            raise IllegalStateError(
                "poll(), unsubscribe() and close() cannot be called from a rebalance "
                "listener callback: return from the callback first"
            )
        channel: _Channel = queue.Queue()

        async def with_channel() -> T:
            _CHANNEL.set(channel)
            return await coroutine

        try:
            future: concurrent.futures.Future[T] = self._submit(with_channel())
        except BaseException:
            coroutine.close()
            raise
        future.add_done_callback(lambda _: channel.put(None))
        try:
            while True:
                request = channel.get()
                if request is None:
                    return future.result()
                self._run_callback(request)
        except BaseException:
            # Ctrl-C or SIGTERM in this thread: the call is abandoned, so stop its coroutine too.
            future.cancel()
            raise

    def _run_callback(self, request: _CallbackRequest) -> None:
        self._local.in_callback = True
        try:
            result = request.callback(request.partitions)
            if inspect.isawaitable(result):
                close = getattr(result, "close", None)
                if close is not None:
                    close()
                raise TypeError(
                    f"the rebalance listener callback {request.callback!r} returned an "
                    "awaitable; the blocking Consumer runs plain functions, use AsyncConsumer "
                    "for coroutine callbacks"
                )
        except Exception as error:
            self._loop.call_soon_threadsafe(_set_exception, request.done, error)
        except BaseException:
            # KeyboardInterrupt and the like end the blocking call; the step fails on the loop.
            interrupted = IllegalStateError("the rebalance listener callback was interrupted")
            self._loop.call_soon_threadsafe(_set_exception, request.done, interrupted)
            raise
        else:
            self._loop.call_soon_threadsafe(_set_result, request.done)
        finally:
            self._local.in_callback = False


def _set_result(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _set_exception(future: asyncio.Future[None], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
