"""Fake upstream services for tests: real servers on loopback, scripted per test."""
