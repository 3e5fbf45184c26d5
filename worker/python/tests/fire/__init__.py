"""Tests of stoker_fire: the FIRE payloads and backends."""
