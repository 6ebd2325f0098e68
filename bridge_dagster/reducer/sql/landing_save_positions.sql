INSERT INTO landing_positions (topic, partition, next_offset, updated_at)
SELECT :topic, p, o, now()
FROM unnest(CAST(:partitions AS integer[]), CAST(:offsets AS bigint[])) AS t(p, o)
ON CONFLICT (topic, partition) DO UPDATE SET
    next_offset = EXCLUDED.next_offset,
    updated_at = EXCLUDED.updated_at
