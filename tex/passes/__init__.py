"""Passes over the loop IR, one module each, each a pure `Stmt -> Stmt` function.

The order they run in is `tex.driver.PIPELINE`.
"""
