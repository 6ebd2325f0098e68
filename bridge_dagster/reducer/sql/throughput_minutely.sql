-- Completions and stamps per (minute, namespace); stamps_per_s averages over the minute.
INSERT INTO reducer_throughput_minutely (
    minute, namespace, workflows_completed, stamps_created, stamps_per_s
)
SELECT
    date_trunc('minute', event_timestamp, 'UTC'),
    COALESCE(namespace, :default_namespace),
    count(*) FILTER (WHERE event_type = 'stamp_workflow_completed'),
    count(*) FILTER (WHERE event_type = 'metadata_stamp_created'),
    count(*) FILTER (WHERE event_type = 'metadata_stamp_created') / 60.0
FROM workflow_events
WHERE event_timestamp >= :start AND event_timestamp < :end
  AND event_type IN ('stamp_workflow_completed', 'metadata_stamp_created')
GROUP BY 1, 2
