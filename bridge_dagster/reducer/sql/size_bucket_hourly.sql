-- Completed workflows per (hour, namespace, size bucket), the original's buckets:
-- le_1mib, le_10mib, le_100mib, gt_100mib (a missing size counts as 0 bytes).
INSERT INTO reducer_size_bucket_hourly (
    hour, namespace, size_bucket, workflows_completed, bytes_stamped
)
SELECT
    date_trunc('hour', event_timestamp, 'UTC'),
    COALESCE(namespace, :default_namespace),
    CASE
        WHEN COALESCE(file_size, 0) <= 1048576 THEN 'le_1mib'
        WHEN file_size <= 10485760 THEN 'le_10mib'
        WHEN file_size <= 104857600 THEN 'le_100mib'
        ELSE 'gt_100mib'
    END,
    count(*),
    COALESCE(sum(file_size), 0)
FROM workflow_events
WHERE event_timestamp >= :start AND event_timestamp < :end
  AND event_type = 'stamp_workflow_completed'
GROUP BY 1, 2, 3
