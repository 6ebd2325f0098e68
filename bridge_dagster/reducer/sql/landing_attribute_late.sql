-- Earlier events of workflows whose namespace this batch made known take it now; their
-- hours are returned so they are aggregated again.
WITH attributed AS (
    DELETE FROM unattributed_events AS u
    USING workflow_namespaces AS n
    WHERE u.workflow_id = n.workflow_id
      AND n.workflow_id = ANY(CAST(string_to_array(:workflow_ids, ',') AS uuid[]))
    RETURNING u.event_id, u.event_timestamp, n.namespace
)
UPDATE workflow_events AS e
SET namespace = a.namespace
FROM attributed AS a
WHERE e.event_id = a.event_id AND e.event_timestamp = a.event_timestamp
RETURNING date_trunc('hour', e.event_timestamp, 'UTC') AS hour
