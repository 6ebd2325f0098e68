-- Each touched hour takes a new touch_seq: it is stale until an aggregation that read at
-- least this seq records it (reducer_hour_state).
INSERT INTO reducer_landed_hours (hour, events, touch_seq, last_landed_at)
SELECT h, n, nextval('reducer_touch_seq'), now()
FROM unnest(CAST(:hours AS timestamptz[]), CAST(:counts AS bigint[])) AS t(h, n)
ON CONFLICT (hour) DO UPDATE SET
    events = reducer_landed_hours.events + EXCLUDED.events,
    touch_seq = EXCLUDED.touch_seq,
    last_landed_at = EXCLUDED.last_landed_at
