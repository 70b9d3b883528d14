"""Schedules (how to compute): stages, their records and primitives. Only `tex.lower` reads them."""
from tex.schedule.auto_inline import AutoInlineElemWise, AutoInlineInjective
from tex.schedule.schedule import Schedule, create_schedule
from tex.schedule.stage import (Fuse, IterVarAttr, Singleton, Split, Stage, ThreadAxis,
                                thread_axis)

__all__ = ["AutoInlineElemWise", "AutoInlineInjective", "Fuse", "IterVarAttr", "Schedule",
           "Singleton", "Split", "Stage", "ThreadAxis", "create_schedule", "thread_axis"]
