-- Each workflow with events in the window, merged into its projection so that the order in
-- which hours are processed does not matter: the state only moves forward in FSM order
-- (pending 1 < processing 2 < completed 3 < failed 4), states_seen ORs the transitions' bits,
-- first/last event times widen. Re-running a window changes nothing.
WITH events AS (
    SELECT
        correlation_id,
        namespace,
        event_type,
        event_timestamp,
        latency_ms,
        CASE state
            WHEN 'pending' THEN 1 WHEN 'processing' THEN 2 WHEN 'completed' THEN 3 ELSE 4
        END AS rank
    FROM workflow_events
    WHERE event_timestamp >= :start AND event_timestamp < :end
      AND correlation_id IS NOT NULL
), workflows AS (
    SELECT
        correlation_id AS workflow_id,
        COALESCE(max(namespace), :default_namespace) AS namespace,
        max(rank) AS state_rank,
        bit_or(CASE WHEN event_type = 'workflow_state_transition'
            THEN (1 << (rank - 1)) ELSE 0 END)::smallint AS states_seen,
        min(event_timestamp) AS first_event_at,
        max(event_timestamp) AS last_event_at,
        max(latency_ms) FILTER (WHERE event_type = 'stamp_workflow_completed') AS latency_ms
    FROM events
    GROUP BY correlation_id
)
INSERT INTO reducer_workflow_projection AS p (
    workflow_id, namespace, state, state_rank, states_seen, transitions,
    first_event_at, last_event_at, latency_ms, updated_at
)
SELECT
    workflow_id, namespace,
    (ARRAY['pending', 'processing', 'completed', 'failed'])[state_rank], state_rank,
    states_seen, bit_count(states_seen::integer::bit(4))::integer,
    first_event_at, last_event_at, latency_ms, now()
FROM workflows
ON CONFLICT (workflow_id) DO UPDATE SET
    namespace = CASE WHEN EXCLUDED.namespace <> :default_namespace
        THEN EXCLUDED.namespace ELSE p.namespace END,
    state = CASE WHEN EXCLUDED.state_rank > p.state_rank THEN EXCLUDED.state ELSE p.state END,
    state_rank = GREATEST(p.state_rank, EXCLUDED.state_rank),
    states_seen = p.states_seen | EXCLUDED.states_seen,
    transitions = bit_count((p.states_seen | EXCLUDED.states_seen)::integer::bit(4))::integer,
    first_event_at = LEAST(p.first_event_at, EXCLUDED.first_event_at),
    last_event_at = GREATEST(p.last_event_at, EXCLUDED.last_event_at),
    latency_ms = COALESCE(EXCLUDED.latency_ms, p.latency_ms),
    updated_at = now()
