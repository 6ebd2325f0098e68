"""The reducer's hourly partitions: UTC, from REDUCER_PARTITIONS_START to the hour in progress."""

from datetime import UTC, datetime

import dagster as dg


def hourly_partitions(start: datetime) -> dg.HourlyPartitionsDefinition:
    # end_offset=1 makes the hour in progress a partition, so it is fresh while it fills.
    return dg.HourlyPartitionsDefinition(start_date=start, timezone="UTC", end_offset=1)


# Dagster's hourly keys look like 2026-11-30-09:00.
KEY_FORMAT = "%Y-%m-%d-%H:%M"


def partition_key(hour: datetime) -> str:
    return f"{hour.astimezone(UTC):{KEY_FORMAT}}"


def hour_of(key: str) -> datetime:
    return datetime.strptime(key, KEY_FORMAT).replace(tzinfo=UTC)
