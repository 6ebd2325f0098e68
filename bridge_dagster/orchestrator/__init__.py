"""The stamp_workflow job, its ops and the workflow state machine."""
