"""The event types the bridge publishes on the workflow event topic."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    """Every `event_type` an envelope may carry; the values are the wire names."""

    # Workflow events, published by the stamp_workflow job.
    STAMP_WORKFLOW_REQUESTED = "stamp_workflow_requested"
    STAMP_WORKFLOW_STARTED = "stamp_workflow_started"
    WORKFLOW_STEP_COMPLETED = "workflow_step_completed"
    ONEXTREE_INTELLIGENCE_REQUESTED = "onextree_intelligence_requested"
    ONEXTREE_INTELLIGENCE_RECEIVED = "onextree_intelligence_received"
    BLAKE3_HASH_GENERATED = "blake3_hash_generated"
    METADATA_STAMP_CREATED = "metadata_stamp_created"
    WORKFLOW_STATE_TRANSITION = "workflow_state_transition"
    STAMP_WORKFLOW_COMPLETED = "stamp_workflow_completed"
    STAMP_WORKFLOW_FAILED = "stamp_workflow_failed"

    # Reducer events, published by the aggregation assets.
    AGGREGATION_STARTED = "aggregation_started"
    AGGREGATION_COMPLETED = "aggregation_completed"
    AGGREGATION_FAILED = "aggregation_failed"
