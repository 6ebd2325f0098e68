-- (hour, namespace) pairs of the window whose workflows_completed differs from a direct count
-- of stamp_workflow_completed events. Hours that landing touched after their aggregation read
-- them are skipped: they are stale and about to be aggregated again.
WITH fresh AS (
    SELECT l.hour
    FROM reducer_landed_hours AS l
    JOIN reducer_hour_state AS s
      ON s.asset = 'reducer_namespace_hourly' AND s.hour = l.hour
    WHERE l.hour >= :start AND l.hour < :end AND s.aggregated_seq >= l.touch_seq
), counted AS (
    SELECT date_trunc('hour', event_timestamp, 'UTC') AS hour,
           COALESCE(namespace, :default_namespace) AS namespace,
           count(*) AS completed
    FROM workflow_events
    WHERE event_timestamp >= :start AND event_timestamp < :end
      AND event_type = 'stamp_workflow_completed'
    GROUP BY 1, 2
), reported AS (
    SELECT hour, namespace, workflows_completed AS completed
    FROM reducer_namespace_hourly
    WHERE hour >= :start AND hour < :end
)
SELECT COALESCE(c.hour, r.hour) AS hour,
       COALESCE(c.namespace, r.namespace) AS namespace,
       COALESCE(r.completed, 0) AS reported,
       COALESCE(c.completed, 0) AS counted
FROM counted AS c
FULL JOIN reported AS r ON r.hour = c.hour AND r.namespace = c.namespace
WHERE COALESCE(c.hour, r.hour) IN (SELECT hour FROM fresh)
  AND COALESCE(r.completed, 0) <> COALESCE(c.completed, 0)
ORDER BY 1, 2
