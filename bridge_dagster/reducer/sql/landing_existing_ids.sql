-- Event ids of the batch that are already landed between :low and :high: the batch's hours
-- widened by landing.EVENT_ID_WINDOW on either side. A re-published event carries the same
-- id and (byte-identical) timestamp; the window also catches a producer that stamped a
-- re-publication with a later time.
SELECT event_id
FROM workflow_events
WHERE event_id = ANY(CAST(string_to_array(:ids, ',') AS uuid[]))
  AND event_timestamp >= CAST(:low AS timestamptz)
  AND event_timestamp < CAST(:high AS timestamptz)
