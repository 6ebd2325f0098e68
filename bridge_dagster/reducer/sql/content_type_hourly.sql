-- Completed workflows per (hour, namespace, content type); no content type reads 'unknown'.
INSERT INTO reducer_content_type_hourly (
    hour, namespace, content_type, workflows_completed, bytes_stamped, latency_p95_ms
)
SELECT
    date_trunc('hour', event_timestamp, 'UTC'),
    COALESCE(namespace, :default_namespace),
    COALESCE(content_type, 'unknown'),
    count(*),
    COALESCE(sum(file_size), 0),
    percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)
FROM workflow_events
WHERE event_timestamp >= :start AND event_timestamp < :end
  AND event_type = 'stamp_workflow_completed'
GROUP BY 1, 2, 3
