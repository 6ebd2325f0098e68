-- Written with the batch, sent after its commit (see landing_relay_*.sql).
INSERT INTO dead_letters (source, code, reason, dlq_topic, value)
SELECT * FROM unnest(
    CAST(:sources AS text[]), CAST(:codes AS text[]), CAST(:reasons AS text[]),
    CAST(:dlq_topics AS text[]), CAST(:dlq_values AS bytea[])
)
ON CONFLICT (source) DO NOTHING
