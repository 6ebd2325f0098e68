-- Which of some workflows have events waiting for a namespace: the commit attributes only
-- those (landing_attribute_late.sql), so this is asked on the look-up connection.
SELECT DISTINCT workflow_id
FROM unattributed_events
WHERE workflow_id = ANY(CAST(string_to_array(:workflow_ids, ',') AS uuid[]))
