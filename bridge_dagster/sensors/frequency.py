"""How often a sensor really ticks, in words for its description."""

# The daemon evaluates sensors in a loop that starts at most every 5 s
# (dagster._daemon.sensor.MIN_INTERVAL_LOOP_TIME), so a shorter minimum interval still
# ticks about every 5 s. The UI's "frequency" shows the minimum interval only.
DAEMON_LOOP_S = 5


def tick_frequency(interval_s: int, setting: str) -> str:
    """'Ticks about every N s (…)', naming the setting that asked for `interval_s`."""
    if interval_s <= DAEMON_LOOP_S:
        return (
            f"Ticks about every {DAEMON_LOOP_S} s, the daemon's sensor loop ({setting} asks for"
            f" at least {interval_s} s)."
        )
    return f"Ticks about every {interval_s} s ({setting})."
