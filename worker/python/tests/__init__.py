"""Tests of the Python payload side (run: /usr/bin/python3 -m unittest discover -s worker/python/tests -t worker/python)."""
