-- Read before the aggregation, so a landing that commits meanwhile leaves its hour stale.
SELECT hour, touch_seq, events FROM reducer_landed_hours WHERE hour >= :start AND hour < :end
