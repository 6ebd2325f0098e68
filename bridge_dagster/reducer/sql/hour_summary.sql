-- Per hour of the window: the numbers each materialization reports and Dagster plots.
SELECT
    hour,
    sum(events)::bigint AS events,
    sum(workflows_completed)::bigint AS completed,
    sum(workflows_failed)::bigint AS failed,
    max(latency_p95_ms) AS latency_p95_ms
FROM reducer_namespace_hourly
WHERE hour >= :start AND hour < :end
GROUP BY hour
ORDER BY hour
