SELECT workflow_id, namespace
FROM workflow_namespaces
WHERE workflow_id = ANY(CAST(:workflow_ids AS uuid[]))
