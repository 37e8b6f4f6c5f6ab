"""Shared training machinery: distributed set-up, checkpoints, logging, schedules and the loops."""
