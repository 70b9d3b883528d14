"""Schedules (how to compute): stages, their records and primitives. Only `tex.lower` reads them."""
from tex.schedule.auto_inline import (AutoInlineBroadcast, AutoInlineElemWise,
                                      AutoInlineInjective)
from tex.schedule.schedule import Schedule, create_schedule
from tex.schedule.relations import Fuse, Singleton, Split
from tex.schedule.stage import IterVarAttr, Stage
from tex.schedule.thread_axis import ThreadAxis, thread_axis

__all__ = ["AutoInlineBroadcast", "AutoInlineElemWise", "AutoInlineInjective", "Fuse",
           "IterVarAttr", "Schedule", "Singleton", "Split", "Stage", "ThreadAxis",
           "create_schedule", "thread_axis"]
