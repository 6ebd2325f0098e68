-- One row per (hour, namespace) of the window's events. Counts are of events: landing keeps
-- one row per event_id, and a workflow emits each of these types once. Bytes, content types
-- and latency come from stamp_workflow_completed; percentile_cont skips null latencies.
INSERT INTO reducer_namespace_hourly (
    hour, namespace, events, workflows_started, workflows_completed, workflows_failed,
    stamps_created, bytes_stamped, distinct_content_types,
    latency_avg_ms, latency_p50_ms, latency_p95_ms, latency_p99_ms
)
SELECT
    date_trunc('hour', event_timestamp, 'UTC'),
    COALESCE(namespace, :default_namespace),
    count(*),
    count(*) FILTER (WHERE event_type = 'stamp_workflow_started'),
    count(*) FILTER (WHERE event_type = 'stamp_workflow_completed'),
    count(*) FILTER (WHERE event_type = 'stamp_workflow_failed'),
    count(*) FILTER (WHERE event_type = 'metadata_stamp_created'),
    COALESCE(sum(file_size) FILTER (WHERE event_type = 'stamp_workflow_completed'), 0),
    count(DISTINCT content_type) FILTER (WHERE event_type = 'stamp_workflow_completed'),
    -- Summed as numeric, so the result does not hang on the order parallel workers add in
    -- and a re-materialization gives the same value to the last bit.
    avg(latency_ms::numeric) FILTER (WHERE event_type = 'stamp_workflow_completed')::float8,
    percentile_cont(0.50) WITHIN GROUP (ORDER BY latency_ms)
        FILTER (WHERE event_type = 'stamp_workflow_completed'),
    percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)
        FILTER (WHERE event_type = 'stamp_workflow_completed'),
    percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms)
        FILTER (WHERE event_type = 'stamp_workflow_completed')
FROM workflow_events
WHERE event_timestamp >= :start AND event_timestamp < :end
GROUP BY 1, 2
