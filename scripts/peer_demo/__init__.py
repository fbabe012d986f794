"""The Peer Energy demo as a small package (entry point: ``scripts/demo.py``).

Modules: ``settings`` (paths, timeouts), ``simhome`` (the simulated home), ``answers``
(the flows' answers), ``util``, ``hassconfig`` (the config directory), ``client`` (REST,
websocket, flows), ``process`` (starting, onboarding and configuring one Home Assistant),
``normal_ha`` (dashboards, automation, the single-home run), ``neighbourhood`` (several
homes in one community, over HTTP or a Mosquitto; the command line).
"""
