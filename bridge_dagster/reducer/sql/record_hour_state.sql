INSERT INTO reducer_hour_state (asset, hour, aggregated_seq, materialized_at)
SELECT :asset, h, s, now()
FROM unnest(CAST(:hours AS timestamptz[]), CAST(:seqs AS bigint[])) AS t(h, s)
ON CONFLICT (asset, hour) DO UPDATE SET
    aggregated_seq = GREATEST(reducer_hour_state.aggregated_seq, EXCLUDED.aggregated_seq),
    materialized_at = EXCLUDED.materialized_at
