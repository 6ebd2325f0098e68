INSERT INTO reducer_aggregations (
    asset, range_start, range_end, status, events, rows_written, duration_ms, error, run_id
)
VALUES (:asset, :start, :end, :status, :events, :rows_written, :duration_ms, :error, :run_id)
