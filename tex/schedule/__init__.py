"""Schedules (how to compute): stages, their records and primitives. Only `tex.lower` reads them."""
from tex.schedule.auto_inline import AutoInlineElemWise, AutoInlineInjective
from tex.schedule.schedule import Schedule, create_schedule
from tex.schedule.stage import Stage, ThreadAxis, thread_axis

__all__ = ["AutoInlineElemWise", "AutoInlineInjective", "Schedule", "Stage", "ThreadAxis",
           "create_schedule", "thread_axis"]
