"""Test settings: the loop-IR verifier runs after every pass in every test."""
import os

os.environ.setdefault("TEX_VERIFY", "1")
