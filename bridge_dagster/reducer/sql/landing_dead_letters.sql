-- Written with the batch, sent after its commit (see landing_relay_*.sql). Landing's source
-- already holds the digest that tells a reused offset's new message apart, so it is the key.
INSERT INTO dead_letters (source, letter_key, code, reason, dlq_topic, value)
SELECT l.source, l.source, l.code, l.reason, l.dlq_topic, l.value FROM unnest(
    CAST(:sources AS text[]), CAST(:codes AS text[]), CAST(:reasons AS text[]),
    CAST(:dlq_topics AS text[]), CAST(:dlq_values AS bytea[])
) AS l(source, code, reason, dlq_topic, value)
ON CONFLICT (letter_key) DO NOTHING
