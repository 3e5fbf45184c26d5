"""Tests of stoker_examples: the example payloads, run as the worker runs them."""
