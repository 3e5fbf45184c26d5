"""Tests of the Python side, one folder per package: payload/ (stoker_payload), fire/
(stoker_fire), examples/ (stoker_examples); test_packages.py checks the layout itself.

Run (from the repository root): npm run test:python, which is
    PYTHONPATH=worker/python/src /usr/bin/python3 -m unittest discover -s worker/python/tests -t worker/python
"""
