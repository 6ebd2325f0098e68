-- Events whose workflow named no namespace yet; attributed when one of its events does.
INSERT INTO unattributed_events (event_id, event_timestamp, workflow_id)
SELECT * FROM unnest(
    CAST(string_to_array(:event_ids, ',') AS uuid[]), CAST(:timestamps AS timestamptz[]), CAST(string_to_array(:workflow_ids, ',') AS uuid[])
)
ON CONFLICT DO NOTHING
