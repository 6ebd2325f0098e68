"""The reducer's hourly partitions: UTC, from REDUCER_PARTITIONS_START to the hour in progress."""

from datetime import datetime

import dagster as dg


def hourly_partitions(start: datetime) -> dg.HourlyPartitionsDefinition:
    # end_offset=1 makes the hour in progress a partition, so it is fresh while it fills.
    return dg.HourlyPartitionsDefinition(start_date=start, timezone="UTC", end_offset=1)
