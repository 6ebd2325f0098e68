SELECT partition, next_offset FROM landing_positions WHERE topic = :topic
