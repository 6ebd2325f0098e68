"""Sensors: the stamp request sensor and the landing sensor."""
