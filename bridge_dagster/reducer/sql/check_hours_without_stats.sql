-- Hours holding landed events that still have no row in reducer_namespace_hourly although
-- their last landing is older than the grace the refresh sensor needs.
SELECT l.hour, l.events, l.last_landed_at
FROM reducer_landed_hours AS l
WHERE l.events > 0
  AND l.hour >= :partitions_start
  AND l.last_landed_at < now() - CAST(:grace AS interval)
  AND NOT EXISTS (SELECT 1 FROM reducer_namespace_hourly AS n WHERE n.hour = l.hour)
ORDER BY l.hour
LIMIT 1000
