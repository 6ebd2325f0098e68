"""Landing and time-partitioned reducer assets, checks and schedules."""
