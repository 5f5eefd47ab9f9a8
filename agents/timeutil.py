"""Wall-clock timestamps for wire messages (the only place the agent reads wall time)."""

from __future__ import annotations

import datetime as dt

from google.protobuf import timestamp_pb2


def timestamp(when: dt.datetime | None = None) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when or dt.datetime.now(dt.UTC))
    return ts
