"""Tests of stoker_payload: the payload protocol."""
