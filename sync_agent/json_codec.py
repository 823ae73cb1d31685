"""JSON in and out of the API server, and the canonical form digests are taken of.

orjson (a well-kept C library) rather than the json module: a restore encodes every object
twice (dry-run, apply), parses every list, and digests every body; at 10,000 objects the json
module spent seconds of the CPU that, on two cores, the API server needs. orjson writes compact
UTF-8 (fewer bytes per request) and refuses what JSON cannot hold exactly in 64 bits; those rare
bodies (integers beyond 64 bits) go through the json module unchanged.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS  # YAML allows `1: x`; json.dumps writes it as "1" too


def dumps(data: Any) -> bytes:
    try:
        return orjson.dumps(data, option=_OPTIONS)
    except TypeError:
        return json.dumps(data, separators=(",", ":")).encode()


def canonical(data: Any) -> bytes:
    """Sorted keys, no spaces: equal objects give equal bytes."""
    try:
        return orjson.dumps(data, option=_OPTIONS | orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def loads(data: bytes) -> Any:
    """For the API server's answers (its numbers fit 64 bits: it stores them so)."""
    return orjson.loads(data)
