"""Tests of herdctl.dashboard: the pure parts, the app on aiohttp's test client, the CLI on a
real herd, and the page in headless Chromium."""
