-- Workflows with events in the window (in hours not stale for the projection) whose projected
-- state is earlier in FSM order than the state their latest event implies.
WITH fresh AS (
    SELECT l.hour
    FROM reducer_landed_hours AS l
    JOIN reducer_hour_state AS s
      ON s.asset = 'reducer_workflow_projection' AND s.hour = l.hour
    WHERE l.hour >= :start AND l.hour < :end AND s.aggregated_seq >= l.touch_seq
), ranked AS (
    SELECT correlation_id,
           CASE state
               WHEN 'pending' THEN 1 WHEN 'processing' THEN 2 WHEN 'completed' THEN 3 ELSE 4
           END AS rank,
           row_number() OVER (
               PARTITION BY correlation_id ORDER BY event_timestamp DESC, event_id
           ) AS newest
    FROM workflow_events
    WHERE event_timestamp >= :start AND event_timestamp < :end
      AND correlation_id IS NOT NULL
      AND date_trunc('hour', event_timestamp, 'UTC') IN (SELECT hour FROM fresh)
)
SELECT r.correlation_id AS workflow_id,
       (ARRAY['pending', 'processing', 'completed', 'failed'])[r.rank] AS latest_event_state,
       COALESCE(p.state, 'missing') AS projected_state
FROM ranked AS r
LEFT JOIN reducer_workflow_projection AS p ON p.workflow_id = r.correlation_id
WHERE r.newest = 1 AND COALESCE(p.state_rank, 0) < r.rank
ORDER BY 1
LIMIT 1000
