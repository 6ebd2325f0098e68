-- The first namespace an event names for its workflow; returns the workflows new here.
INSERT INTO workflow_namespaces (workflow_id, namespace, first_seen)
SELECT * FROM unnest(
    CAST(string_to_array(:workflow_ids, ',') AS uuid[]), CAST(:namespaces AS text[]), CAST(:seen AS timestamptz[])
)
ON CONFLICT (workflow_id) DO NOTHING
RETURNING workflow_id
