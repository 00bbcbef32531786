"""The dialer's engine: sans-I/O decisions about leads, pacing and call sessions.

Nothing in this package awaits, reads a clock, or touches a socket, a file or the database:
every input is an event carrying `now`, every output a command for a driver to perform (the
daemon, or the simulator in `benchmarks/`). Import the public names from their modules:
`dialer.engine.engine.DialerEngine`, `dialer.engine.events`, `dialer.engine.commands`.
"""
