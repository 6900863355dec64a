"""Chaos tests: real node processes under crashes, cut links and a fault-injecting proxy."""
