-- Per namespace, the sum over every materialized hour, recomputed from the hourly table.
INSERT INTO reducer_bridge_state (
    namespace, events, workflows_completed, workflows_failed, stamps_created, bytes_stamped,
    first_hour, last_hour, updated_at
)
SELECT
    namespace, sum(events), sum(workflows_completed), sum(workflows_failed),
    sum(stamps_created), sum(bytes_stamped), min(hour), max(hour), now()
FROM reducer_namespace_hourly
GROUP BY namespace
