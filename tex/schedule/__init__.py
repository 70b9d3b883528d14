"""Schedules (how to compute) and lowering them to loop IR."""
from tex.schedule.schedule import Schedule, create_schedule
from tex.schedule.stage import Stage

__all__ = ["Schedule", "Stage", "create_schedule"]
