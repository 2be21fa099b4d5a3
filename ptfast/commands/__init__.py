"""What the admin runs: the command line, the service loop, install, tune, baseline,
and the settings check that `ptfast check` walks."""
