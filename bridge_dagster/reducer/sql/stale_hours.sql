-- Hours landing touched after some reducer table last aggregated them, newest first; an hour
-- whose aggregation failed within the last minute waits, so a failing hour is retried once a
-- minute rather than on every tick.
SELECT l.hour, l.last_landed_at
FROM reducer_landed_hours AS l
WHERE l.hour >= :start AND l.hour < :end
  AND EXISTS (
      SELECT 1
      FROM unnest(CAST(:tables AS text[])) AS t(asset)
      LEFT JOIN reducer_hour_state AS s ON s.asset = t.asset AND s.hour = l.hour
      WHERE COALESCE(s.aggregated_seq, -1) < l.touch_seq
  )
  AND NOT EXISTS (
      SELECT 1
      FROM reducer_aggregations AS a
      WHERE a.status = 'failed'
        AND a.finished_at > now() - interval '1 minute'
        AND l.hour >= a.range_start AND l.hour < a.range_end
  )
ORDER BY l.hour DESC
