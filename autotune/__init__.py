"""The autotuner (schedule spaces, cost model, search, measurement). Comes in a later version."""
