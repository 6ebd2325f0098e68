UPDATE dead_letters SET sent_at = now() WHERE id = ANY(CAST(:ids AS bigint[]))
