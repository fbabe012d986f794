"""Browser tests: a real Home Assistant process driven by a real headless Chromium."""
