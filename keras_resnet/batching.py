"""Request batching for :mod:`keras_resnet.serving`, as TF Serving's ``--enable_batching``.

Concurrent ``:predict`` requests to one model version and signature wait in a queue and run as
one signature call on their inputs joined along the batch axis; the outputs are split back.
On a CPU that mostly saves the per-call overhead of small requests (see
benchmarks/bench_serving.py for whether it pays off); on an accelerator it also fills the
device. A request is anything with ``served`` (``run`` and ``call``), ``signature``, ``arrays``
and ``answer(outputs) -> bytes``: :class:`keras_resnet.serving.Prediction`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from keras_resnet.rest import RequestError

if TYPE_CHECKING:  # serving imports this module
    from keras_resnet.serving import Prediction


def batch_size(arrays: dict[str, np.ndarray]) -> int | None:
    """The examples in a request: the common length of its inputs' first axis (None if none)."""
    sizes = {a.shape[0] if a.ndim else None for a in arrays.values()}
    return sizes.pop() if len(sizes) == 1 else None


def run_joined(requests: list[Prediction]) -> list[bytes | Exception]:
    """Answers requests to one signature with one call on their concatenated inputs.

    The outputs are split back along the batch axis. Where the joined call fails (one bad image
    fails a whole batch) or cannot be split, each request runs alone, so that one request's
    error reaches only its own client. Returns the answer body or the error, per request.
    """
    if len(requests) > 1:
        first = requests[0]
        sizes = [batch_size(r.arrays) for r in requests]
        try:
            joined = {k: np.concatenate([r.arrays[k] for r in requests]) for k in first.arrays}
            outputs = first.served.run(first.signature, joined)
        except (tf.errors.OpError, ValueError):
            outputs = None
        if outputs is not None and all(np.ndim(v) and len(v) == sum(sizes) for v in outputs.values()):
            bounds = np.cumsum([0, *sizes])
            return [r.answer({k: v[a:b] for k, v in outputs.items()}) for r, a, b in zip(requests, bounds, bounds[1:])]
    answers = []
    for r in requests:
        try:
            answers.append(r.answer(r.served.call(r.signature, r.arrays)))
        except Exception as e:  # noqa: BLE001 - handed to that request's handler, which answers it
            answers.append(e)
    return answers


def _stopping() -> RequestError:
    return RequestError(503, "the server is stopping")


@dataclass
class _Queue:
    waiting: list = field(default_factory=list)  # (request, size, arrival, future)
    examples: int = 0
    running: int = 0
    timer: object = None


class Batcher:
    """Joins concurrent ``:predict`` requests to one version and signature into one call.

    TF Serving's ``--enable_batching`` scheme: a batch closes when it holds ``max_batch_size``
    examples or its first request has waited ``batch_timeout_micros``, and runs when one of the
    ``max_running`` batch slots is free; meanwhile requests keep joining it. With a timeout of 0
    a request on an idle server runs at once, and batches form only while the slots are busy.
    A request larger than ``max_batch_size`` runs alone. Lives on the server's event loop.
    """

    def __init__(self, executor: concurrent.futures.Executor, max_batch_size: int, batch_timeout_micros: int,
                 max_running: int):
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.timeout = batch_timeout_micros / 1e6
        self.max_running = max_running
        self.queues: dict[tuple[int, str], _Queue] = {}
        self.batches = 0  # signature calls made, for the curious (tests, benchmarks)
        self.requests = 0
        self.running: set[asyncio.Future] = set()

    async def submit(self, request: Prediction) -> bytes:
        loop = asyncio.get_running_loop()
        queue = self.queues.setdefault((id(request.served), request.signature), _Queue())
        size = batch_size(request.arrays)
        future = loop.create_future()
        # A request without a batch axis, or too big to share a batch, gets a batch of its own.
        queue.waiting.append((request, size if size else self.max_batch_size, loop.time(), future))
        queue.examples += size if size else self.max_batch_size
        self._dispatch(queue)
        answer = await future
        if isinstance(answer, Exception):
            raise answer
        return answer

    def _dispatch(self, queue: _Queue) -> None:
        loop = asyncio.get_running_loop()
        while queue.waiting and queue.running < self.max_running:
            due = queue.waiting[0][2] + self.timeout
            if queue.examples < self.max_batch_size and loop.time() < due:
                if queue.timer is None:
                    queue.timer = loop.call_at(due, self._on_timer, queue)
                return
            batch, examples = [], 0
            while queue.waiting and (not batch or examples + queue.waiting[0][1] <= self.max_batch_size):
                task = queue.waiting.pop(0)
                batch.append(task)
                examples += task[1]
            queue.examples -= examples
            queue.running += 1
            self.batches += 1
            self.requests += len(batch)
            done = loop.run_in_executor(self.executor, run_joined, [task[0] for task in batch])
            self.running.add(done)
            done.add_done_callback(functools.partial(self._finished, queue, batch))

    def _on_timer(self, queue: _Queue) -> None:
        queue.timer = None
        self._dispatch(queue)

    def cancel(self) -> None:
        """Drops the waiting and running batches (the server is stopping): a call under way
        finishes in its thread, and its answer goes nowhere instead of to a closed event loop."""
        for future in list(self.running):
            future.cancel()
        for queue in self.queues.values():
            for task in queue.waiting:
                if not task[3].done():
                    task[3].set_result(_stopping())
            queue.waiting.clear()

    def _finished(self, queue: _Queue, batch: list, done: asyncio.Future) -> None:
        self.running.discard(done)
        queue.running -= 1
        if done.cancelled():
            answers = [_stopping()] * len(batch)
        elif done.exception() is not None:
            answers = [done.exception()] * len(batch)
        else:
            answers = done.result()
        for task, answer in zip(batch, answers):
            if not task[3].done():
                task[3].set_result(answer)
        self._dispatch(queue)
