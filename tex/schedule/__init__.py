"""Schedules (how to compute) and lowering them to loop IR."""
from tex.schedule.schedule import Schedule, create_schedule
from tex.schedule.stage import Stage, ThreadAxis, thread_axis

__all__ = ["Schedule", "Stage", "ThreadAxis", "create_schedule", "thread_axis"]
