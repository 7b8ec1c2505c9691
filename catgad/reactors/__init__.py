"""What every reactor (sagas, process managers, timers) is built on: a clock, a duration
syntax, an envelope-level command sender, the log follower, and the component protocol
the runtime starts and stops them through."""
