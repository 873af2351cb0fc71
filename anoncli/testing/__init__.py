"""Test dummies that ship with the package (fake corpora in real layouts)."""
