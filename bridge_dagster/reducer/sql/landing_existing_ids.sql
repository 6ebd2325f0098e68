-- Event ids of the batch that are already landed. A re-published event carries the same
-- id and (byte-identical) timestamp; the day on either side also catches a producer that
-- stamped a re-publication with a later time.
SELECT event_id
FROM workflow_events
WHERE event_id = ANY(CAST(string_to_array(:ids, ',') AS uuid[]))
  AND event_timestamp >= CAST(:earliest AS timestamptz) - interval '1 day'
  AND event_timestamp < CAST(:latest AS timestamptz) + interval '1 day'
