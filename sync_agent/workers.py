"""Run one function over many objects on a thread pool, a batch of objects per task.

Used by plan (dry-runs), apply and prune; `reporting_errors` turns one object's API error into
the sentence to report, so a stage can report every failed object at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sync_agent.kube import ApiError, Unreachable

T = TypeVar("T")
R = TypeVar("R")


def map_batched(pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Sequence[T],
                workers: int) -> Iterator[R]:
    """Like `pool.map(fn, items)`, results in order, with one future per batch.

    A future per object costs more of the GIL than the request it wraps once there are
    thousands (their locks and conditions are created while 32 threads contend), and that
    CPU is taken from the API server. Batches stay small enough that every worker gets some.
    """
    size = max(1, min(64, len(items) // (workers * 4)))
    batches = [items[start:start + size] for start in range(0, len(items), size)]
    for results in pool.map(lambda batch: [fn(item) for item in batch], batches):
        yield from results


def reporting_errors(fn: Callable[[T], R], describe: Callable[[T, ApiError], str]
                     ) -> Callable[[T], R | str]:
    """`fn`, with an object's API error coming back as the sentence `describe` makes of it.

    The API server being unreachable still raises: every other object would fail alike, so the
    run stops instead of reporting each of them.
    """
    def call(item: T) -> R | str:
        try:
            return fn(item)
        except Unreachable:
            raise
        except ApiError as e:
            return describe(item, e)
    return call
