SELECT id, source, value
FROM dead_letters
WHERE dlq_topic = :dlq_topic AND sent_at IS NULL AND value IS NOT NULL
ORDER BY id
LIMIT :limit
