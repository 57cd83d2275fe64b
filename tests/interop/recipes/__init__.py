"""The README's client recipes, as the interop tests run them (the README holds each file's
text: tests/interop/test_readme.py checks that it does)."""
