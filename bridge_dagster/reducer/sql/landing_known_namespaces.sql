SELECT workflow_id, namespace
FROM workflow_namespaces
WHERE workflow_id = ANY(CAST(string_to_array(:workflow_ids, ',') AS uuid[]))
